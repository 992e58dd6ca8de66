{#- One row per resolved customer with its place in the activity and revenue
    pyramids as of var('as_of_date'). -#}
with customers as (
    select * from {{ ref('int_customers_resolved') }}
),

orders as (
    select * from {{ ref('int_customer_orders_aggregated') }}
),

with_revenue as (
    select
        customers.customer_key,
        customers.anchor_type,
        coalesce(orders.revenue_eur, 0) as revenue_eur,
        orders.last_order_date,
        coalesce(orders.orders_completed, 0) as orders_completed
    from customers
    left join orders on customers.customer_key = orders.customer_key
),

ranked as (
    select
        *,
        case
            when revenue_eur > 0
                then row_number() over (
                    partition by revenue_eur > 0 order by revenue_eur desc, customer_key
                )
        end as revenue_rank,
        count(*) filter (where revenue_eur > 0) over () as buyers
    from with_revenue
),

final as (
    select
        customer_key,
        {{ as_of_date() }} as as_of_date,
        case
            when orders_completed > 0
                and last_order_date > {{ as_of_date() }} - {{ var('active_window_days') }}
                then 'active'
            when orders_completed > 0 then 'inactive'
            when anchor_type in ('shop_customer_id', 'email') then 'prospect'
            else 'suspect'
        end as activity_tier,
        case
            when revenue_rank is null then 'none'
            else {{ revenue_tier_case('revenue_rank', 'buyers') }}
        end as revenue_tier,
        revenue_rank,
        revenue_eur
    from ranked
)

select * from final
