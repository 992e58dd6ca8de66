{#- index for the BI queries in docs/bi_queries.sql -#}
{{ config(pre_hook="set local jit = off",
          post_hook=["{{ ensure_index(['customer_key', 'pyramid']) }}"]) }}
{#- One row per customer, pyramid ('activity' | 'revenue') and period over which
    the customer's tier in that pyramid stayed the same (slowly changing dimension,
    type 2).

    Built from the snapshots of int_customer_tiers_monthly (first day of each month
    and the run's as_of_date): a period starts at a snapshot whose tier differs from
    the tier at the snapshot before, or where the customer appears (valid_from,
    inclusive), and ends where the next period starts (valid_to, exclusive); the
    current period has valid_to null and is_current true. A customer once seen is in
    every later snapshot, so a customer's periods in a pyramid are contiguous, do not
    overlap, and the last one is current. previous_tier and movement say how the
    customer got into the tier. -#}
with snapshots as (
    select
        customer_key,
        snapshot_date,
        activity_tier,
        revenue_tier,
        previous_activity_tier,
        previous_revenue_tier
    from {{ ref('int_customer_tiers_monthly') }}
),

-- a period starts where the tier differs from the snapshot before (or there is none)
period_starts as (
    select
        customer_key,
        'activity' as pyramid,
        activity_tier as tier,
        previous_activity_tier as previous_tier,
        snapshot_date as valid_from
    from snapshots
    where previous_activity_tier is distinct from activity_tier
    union all
    select customer_key, 'revenue', revenue_tier, previous_revenue_tier, snapshot_date
    from snapshots
    where previous_revenue_tier is distinct from revenue_tier
),

final as (
    select
        customer_key,
        pyramid,
        tier,
        valid_from,
        lead(valid_from) over by_pyramid as valid_to,
        lead(valid_from) over by_pyramid is null as is_current,
        previous_tier,
        {{ tier_movement('pyramid', 'previous_tier', 'tier') }} as movement
    from period_starts
    window by_pyramid as (partition by customer_key, pyramid order by valid_from)
)

select * from final
