{#- index for the BI queries in docs/bi_queries.sql -#}
{{ config(post_hook=["{{ ensure_index(['customer_key', 'suggestion_rank']) }}"]) }}
{#- One row per buying customer and suggestion (up to var('next_product_suggestions')):
    products to offer next, from the rules in product_affinity.

    The customer's var('next_product_recent_products') most recently bought distinct
    products are the antecedents; each brings its var('next_product_rules_per_product')
    strongest rules (by lift, positive associations only: lift > 1). Products the
    customer has already ordered (any order not cancelled, returns included) are never
    suggested. A product reached from several antecedents keeps its most confident
    rule; suggestions rank by confidence (the share of the antecedent's buyers who
    also bought it), then lift. Both limits bound the work at about
    buyers x recent products x rules per product candidate rows. -#}
with orders as (
    select * from {{ ref('int_orders_attributed') }}
),

order_lines as (
    select * from {{ ref('stg_sales__order_lines') }}
),

products as (
    select * from {{ ref('stg_sales__products') }}
),

affinity as (
    select * from {{ ref('product_affinity') }}
),

customer_products as (
    select
        orders.customer_key,
        order_lines.product_id,
        max(orders.ordered_at) filter (where orders.is_purchase) as last_bought_at
    from orders
    inner join order_lines on orders.order_id = order_lines.order_id
    where orders.order_status <> 'cancelled'
        and order_lines.product_id is not null
    group by orders.customer_key, order_lines.product_id
),

bought_by_recency as (
    select
        customer_key,
        product_id,
        row_number() over (
            partition by customer_key order by last_bought_at desc, product_id
        ) as recency_rank
    from customer_products
    where last_bought_at is not null
),

recent_products as (
    select
        customer_key,
        product_id,
        recency_rank
    from bought_by_recency
    where recency_rank <= {{ var('next_product_recent_products') }}
),

top_rules as (
    select
        antecedent_product_id,
        consequent_product_id,
        confidence,
        lift
    from affinity
    where lift > 1
        and rank_for_antecedent <= {{ var('next_product_rules_per_product') }}
),

candidates as (
    select
        recent_products.customer_key,
        top_rules.consequent_product_id as product_id,
        top_rules.antecedent_product_id as because_of_product_id,
        top_rules.confidence,
        top_rules.lift,
        row_number() over (
            partition by recent_products.customer_key, top_rules.consequent_product_id
            order by top_rules.confidence desc, top_rules.lift desc, recent_products.recency_rank
        ) as rule_rank
    from recent_products
    inner join top_rules on recent_products.product_id = top_rules.antecedent_product_id
    left join customer_products as owned
        on recent_products.customer_key = owned.customer_key
        and top_rules.consequent_product_id = owned.product_id
    where owned.product_id is null
),

ranked as (
    select
        customer_key,
        product_id,
        because_of_product_id,
        confidence,
        lift,
        row_number() over (
            partition by customer_key order by confidence desc, lift desc, product_id
        ) as suggestion_rank
    from candidates
    where rule_rank = 1
),

final as (
    select
        ranked.customer_key,
        ranked.suggestion_rank,
        ranked.product_id,
        products.product_name,
        products.category,
        ranked.because_of_product_id,
        ranked.confidence,
        ranked.lift
    from ranked
    left join products on ranked.product_id = products.product_id
    where ranked.suggestion_rank <= {{ var('next_product_suggestions') }}
)

select * from final
