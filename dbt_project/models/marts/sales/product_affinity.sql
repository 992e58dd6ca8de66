{#- One row per ordered product pair (antecedent, consequent) bought in the same
    purchase: association rule "who buys the antecedent also buys the consequent".

    Baskets are purchases (orders kept wholly or in part) as sets of distinct products;
    int_product_pairs_counted keeps, day by day, how many purchases hold each unordered pair and
    each product. Both directions of a pair are read off the same count:
      support    = purchases holding both / all purchases
      confidence = purchases holding both / purchases holding the antecedent
      lift       = confidence / (purchases holding the consequent / all purchases)
    A pair is kept when it was bought together at least var('affinity_min_orders')
    times and its support reaches var('affinity_min_support'). -#}
with orders as (
    select * from {{ ref('int_orders_attributed') }}
),

counted as (
    select product_a, product_b, orders_with_both
    from {{ ref('int_product_pairs_counted') }}
),

products as (
    select * from {{ ref('stg_sales__products') }}
),

purchase_count as (
    select count(*) as purchase_orders
    from orders
    where is_purchase
),

product_orders as (
    select product_a as product_id, orders_with_both as orders_with_product
    from counted
    where product_a = product_b
),

pairs as (
    select product_a, product_b, orders_with_both
    from counted
    where product_a < product_b
        and orders_with_both >= {{ var('affinity_min_orders') }}
),

kept_pairs as (
    select
        pairs.product_a,
        pairs.product_b,
        pairs.orders_with_both
    from pairs
    cross join purchase_count
    where pairs.orders_with_both >= {{ var('affinity_min_support') }} * purchase_count.purchase_orders
),

rules as (
    select product_a as antecedent_product_id, product_b as consequent_product_id, orders_with_both
    from kept_pairs
    union all
    select product_b as antecedent_product_id, product_a as consequent_product_id, orders_with_both
    from kept_pairs
),

measured as (
    select
        rules.antecedent_product_id,
        rules.consequent_product_id,
        rules.orders_with_both,
        antecedent.orders_with_product as antecedent_orders,
        consequent.orders_with_product as consequent_orders,
        purchase_count.purchase_orders,
        rules.orders_with_both::numeric / purchase_count.purchase_orders as support,
        rules.orders_with_both::numeric / antecedent.orders_with_product as confidence,
        rules.orders_with_both::numeric * purchase_count.purchase_orders
        / (antecedent.orders_with_product::numeric * consequent.orders_with_product) as lift
    from rules
    inner join product_orders as antecedent on rules.antecedent_product_id = antecedent.product_id
    inner join product_orders as consequent on rules.consequent_product_id = consequent.product_id
    cross join purchase_count
),

final as (
    select
        measured.antecedent_product_id,
        antecedent.product_name as antecedent_product_name,
        antecedent.category as antecedent_category,
        measured.consequent_product_id,
        consequent.product_name as consequent_product_name,
        consequent.category as consequent_category,
        measured.orders_with_both,
        measured.antecedent_orders,
        measured.consequent_orders,
        measured.purchase_orders,
        cast(measured.support as numeric(12, 10)) as support,
        cast(measured.confidence as numeric(10, 8)) as confidence,
        cast(measured.lift as numeric(16, 6)) as lift,
        row_number() over (
            partition by measured.antecedent_product_id
            order by measured.lift desc, measured.confidence desc, measured.consequent_product_id
        ) as rank_for_antecedent
    from measured
    left join products as antecedent on measured.antecedent_product_id = antecedent.product_id
    left join products as consequent on measured.consequent_product_id = consequent.product_id
)

select * from final
