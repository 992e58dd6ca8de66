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
    The figures are customer_contact_effect's for the department sales_follow_up (the macro
    contact_effect_ctes, applied there to every department), read from it rather than
    computed a second time from every order. -#}
with contact_effect as (
    select * from {{ ref('customer_contact_effect') }}
),

follow_up as (
    select *
    from contact_effect
    where department = 'sales_follow_up'
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
        coalesce(follow_up.customers, 0) as customers,
        cast(coalesce(follow_up.spend_before, 0) as numeric(16, 2)) as spend_before,
        cast(coalesce(follow_up.spend_after, 0) as numeric(16, 2)) as spend_after,
        cast(follow_up.change_pct as numeric(12, 2)) as change_pct,
        cast(follow_up.avg_change_per_customer as numeric(14, 2)) as avg_change_per_customer,
        cast(follow_up.avg_window_days as numeric(6, 1)) as avg_window_days,
        cast(benchmark.published_change_pct as numeric(5, 1)) as published_change_pct
    from benchmark
    left join follow_up on benchmark.customer_group = follow_up.customer_group
)

select * from final
