{#- One row per customer group ('contacted', 'not_contacted'): how existing customers'
    net spending changed after a follow-up call, next to the published benchmark
    (called customers spent 6 % more the next year, customers not called 8 % less).

    - contacted: customers an outbound follow-up call reached (call outcome 'reached');
      reference time = their first such call.
    - not_contacted: buying customers who never got a follow-up call (customers only
      called without an answer are in neither group: neither treated nor a clean
      control). Each gets a reference time drawn from the contacted customers' call
      times (a stable hash of the customer key picks one), so both groups are measured
      over the same calendar dates and seasons.
    - Windows: net spending on purchases in [reference - w, reference) and
      [reference, reference + w), w = var('follow_up_window_days') days, shortened for
      both sides to the days of order history the warehouse holds before the reference
      date, so before and after always span the same number of days. Customers whose
      window would be under var('follow_up_min_window_days') days, or whose after-window
      has not fully elapsed by the as-of date, are left out.
    - Existing customer: at least one purchase in the before-window.
    The groups and windows are those of the macro contact_effect_ctes, which
    customer_contact_effect applies to every department. -#}
{%- set window_days = var('follow_up_window_days') -%}
{%- set min_window_days = var('follow_up_min_window_days') -%}
with orders as (
    select * from {{ ref('int_orders_attributed') }}
),

tickets as (
    select * from {{ ref('int_tickets_attributed') }}
),

order_facts as (
    select
        customer_key,
        ordered_at,
        ordered_date,
        is_purchase,
        net_revenue
    from orders
),

follow_up_calls as (
    select
        customer_key,
        created_at,
        call_outcome
    from tickets
    where is_follow_up_call
        and customer_key is not null
),

touched as (
    select distinct
        'sales_follow_up' as department,
        customer_key
    from follow_up_calls
),

contacts as (
    select
        'sales_follow_up' as department,
        customer_key,
        min(created_at) as reference_at
    from follow_up_calls
    where call_outcome = 'reached'
    group by customer_key
),

{{ contact_effect_ctes(window_days, min_window_days) }}

by_group as (
    select
        customer_group,
        count(*) as customers,
        sum(spend_before) as spend_before,
        sum(spend_after) as spend_after,
        avg(window_days) as avg_window_days
    from customer_spend
    where purchases_before > 0
    group by customer_group
),

{#- the published study's figures: change in spending over the next year -#}
benchmark as (
    select *
    from (
        values ('contacted', 1, 6.0), ('not_contacted', 2, -8.0)
    ) as published (customer_group, group_order, published_change_pct)
),

final as (
    select
        benchmark.customer_group,
        benchmark.group_order,
        {{ as_of_date() }} as as_of_date,
        coalesce(by_group.customers, 0) as customers,
        cast(coalesce(by_group.spend_before, 0) as numeric(16, 2)) as spend_before,
        cast(coalesce(by_group.spend_after, 0) as numeric(16, 2)) as spend_after,
        cast(100 * (by_group.spend_after - by_group.spend_before)
            / nullif(by_group.spend_before, 0) as numeric(12, 2)) as change_pct,
        cast((by_group.spend_after - by_group.spend_before) / by_group.customers as numeric(14, 2))
            as avg_change_per_customer,
        cast(by_group.avg_window_days as numeric(6, 1)) as avg_window_days,
        cast(benchmark.published_change_pct as numeric(5, 1)) as published_change_pct
    from benchmark
    left join by_group on benchmark.customer_group = by_group.customer_group
)

select * from final
