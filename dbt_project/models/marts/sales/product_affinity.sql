{#- One row per ordered product pair (antecedent, consequent) bought in the same
    purchase: association rule "who buys the antecedent also buys the consequent".

    Baskets are purchases (orders kept wholly or in part) as sorted arrays of
    distinct products. Each basket's unordered pairs are built once and counted; both
    directions of a pair are then read off the same count:
      support    = purchases holding both / all purchases
      confidence = purchases holding both / purchases holding the antecedent
      lift       = confidence / (purchases holding the consequent / all purchases)
    A pair is kept when it was bought together at least var('affinity_min_orders')
    times and its support reaches var('affinity_min_support'). -#}
with orders as (
    select * from {{ ref('int_orders_attributed') }}
),

order_lines as (
    select * from {{ ref('stg_sales__order_lines') }}
),

products as (
    select * from {{ ref('stg_sales__products') }}
),

purchases as (
    select order_id
    from orders
    where is_purchase
),

purchase_count as (
    select count(*) as purchase_orders
    from purchases
),

baskets as (
    select
        order_lines.order_id,
        array_agg(distinct order_lines.product_id order by order_lines.product_id) as products
    from order_lines
    inner join purchases on order_lines.order_id = purchases.order_id
    where order_lines.product_id is not null
    group by order_lines.order_id
),

product_orders as (
    select
        basket_product.product_id,
        count(*) as orders_with_product
    from baskets
    cross join lateral unnest(baskets.products) as basket_product (product_id)
    group by basket_product.product_id
),

{#- each basket's unordered pairs, once: products are sorted, so position i < j -#}
pairs as (
    select
        first_product.product_id as product_a,
        second_product.product_id as product_b,
        count(*) as orders_with_both
    from baskets
    cross join lateral unnest(baskets.products) with ordinality as first_product (product_id, position)
    cross join lateral unnest(baskets.products) with ordinality as second_product (product_id, position)
    where cardinality(baskets.products) > 1
        and first_product.position < second_product.position
    group by first_product.product_id, second_product.product_id
    having count(*) >= {{ var('affinity_min_orders') }}
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
