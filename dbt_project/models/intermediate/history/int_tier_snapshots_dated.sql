{#- One row per snapshot_date of the tier history: the first day of every month from the
    first month with orders, tickets or web visits (dated before var('as_of_date'), UTC)
    up to the month of as_of_date, plus as_of_date itself; with the snapshot after each
    (null at the last) and the first snapshot. Without any such fact, as_of_date alone. -#}
with spend as (
    select customer_key, period_first_order_date
    from {{ ref('int_customer_spend_monthly') }}
),

ticket_customers as (
    select first_ticket_at
    from {{ ref('int_customer_tickets_aggregated') }}
),

web_customers as (
    {{ customer_first_web_visits() }}
),

-- history starts in the first month with orders, tickets or web visits
data_start as (
    select cast(date_trunc('month', cast(min(first_date) as timestamp)) as date) as first_month
    from (
        select min(period_first_order_date) as first_date from spend
        union all
        select min(cast(first_ticket_at at time zone 'UTC' as date)) from ticket_customers
        union all
        select min(cast(first_web_visit_at at time zone 'UTC' as date)) from web_customers
    ) as firsts
    where first_date < {{ as_of_date() }}
),

snapshot_dates as (
    select cast(month_start as date) as snapshot_date
    from data_start
    cross join lateral generate_series(
        cast(data_start.first_month as timestamp),
        date_trunc('month', cast({{ as_of_date() }} as timestamp)),
        interval '1 month'
    ) as month_start
    union
    select {{ as_of_date() }}
),

final as (
    select
        snapshot_date,
        lead(snapshot_date) over (order by snapshot_date) as next_snapshot_date,
        min(snapshot_date) over () as first_snapshot_date
    from snapshot_dates
)

select * from final
