{#- One row per customer_key with at least one purchase up to the as-of date: the
    input of the customer value models (crm360/transform/value.py).

    Purchases are counted per distinct purchase day (an order kept wholly or in part,
    with positive net revenue): several orders on one day are one transaction. The
    first purchase day starts the customer's history; frequency counts the repeat
    purchase days after it, recency_days is the first to the last purchase day,
    tenure_days the first purchase day to the as-of date, and avg_repeat_value
    the mean net revenue of the repeat purchase days (null without repeats). -#}
with orders as (
    select * from {{ ref('int_orders_attributed') }}
),

purchase_days as (
    select
        customer_key,
        ordered_date as purchase_date,
        sum(net_revenue) as revenue
    from orders
    where
        is_purchase
        and net_revenue > 0
        and ordered_date <= {{ as_of_date() }}
    group by customer_key, ordered_date
),

numbered as (
    select
        customer_key,
        purchase_date,
        revenue,
        row_number() over (partition by customer_key order by purchase_date) as purchase_day_number
    from purchase_days
),

summarized as (
    select
        customer_key,
        count(*) as purchase_days,
        min(purchase_date) as first_purchase_date,
        max(purchase_date) as last_purchase_date,
        avg(revenue) filter (where purchase_day_number > 1) as avg_repeat_value
    from numbered
    group by customer_key
),

final as (
    select
        customer_key,
        purchase_days,
        purchase_days - 1 as frequency,
        last_purchase_date - first_purchase_date as recency_days,
        {{ as_of_date() }} - first_purchase_date as tenure_days,
        round(avg_repeat_value, 4) as avg_repeat_value,
        first_purchase_date,
        last_purchase_date,
        {{ as_of_date() }} as as_of_date
    from summarized
)

select * from final
