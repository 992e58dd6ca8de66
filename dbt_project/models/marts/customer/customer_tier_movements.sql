{#- index for the BI queries in docs/bi_queries.sql -#}
{{ config(pre_hook="set local jit = off",
          post_hook=["{{ ensure_index(['snapshot_date', 'pyramid']) }}"]) }}
{#- One row per snapshot_date (the snapshot moved into), pyramid, from_tier and
    to_tier: how many customers went from from_tier at the previous snapshot to
    to_tier at this one (the month-by-month movement matrix).

    Snapshots are those of int_customer_tiers_monthly: the first day of each month
    and the run's as_of_date. from_tier is null for customers not in the previous
    snapshot (movement 'entered'; at the first snapshot everyone enters). movement
    compares tier ranks (activity: active > inactive > prospect > suspect; revenue:
    var('revenue_tiers') in order, then none): 'up', 'down' or 'same'. Revenue of
    the movers is their net revenue in the period that ended at snapshot_date and
    in the one that follows it (null at the last snapshot). For each snapshot and
    pyramid the customers add up to the customers in that snapshot. -#}
with snapshots as (
    select
        snapshot_date,
        activity_tier,
        revenue_tier,
        previous_activity_tier,
        previous_revenue_tier,
        period_revenue,
        next_period_revenue
    from {{ ref('int_customer_tiers_monthly') }}
),

snapshot_dates as (
    select
        snapshot_date,
        lag(snapshot_date) over (order by snapshot_date) as previous_snapshot_date,
        lead(snapshot_date) over (order by snapshot_date) as next_snapshot_date
    from (select distinct snapshot_date from snapshots) as dates
),

-- both pyramids' moves in one pass, before unpivoting
moves as (
    select
        snapshot_date,
        previous_activity_tier,
        activity_tier,
        previous_revenue_tier,
        revenue_tier,
        count(*) as customers,
        sum(period_revenue) as period_revenue,
        sum(next_period_revenue) as next_period_revenue
    from snapshots
    group by 1, 2, 3, 4, 5
),

by_pyramid as (
    select
        snapshot_date,
        'activity' as pyramid,
        previous_activity_tier as from_tier,
        activity_tier as to_tier,
        sum(customers) as customers,
        sum(period_revenue) as period_revenue,
        sum(next_period_revenue) as next_period_revenue
    from moves
    group by 1, 2, 3, 4
    union all
    select
        snapshot_date,
        'revenue',
        previous_revenue_tier,
        revenue_tier,
        sum(customers),
        sum(period_revenue),
        sum(next_period_revenue)
    from moves
    group by 1, 2, 3, 4
),

final as (
    select
        by_pyramid.snapshot_date,
        snapshot_dates.previous_snapshot_date,
        by_pyramid.snapshot_date = {{ as_of_date() }} as is_current,
        by_pyramid.pyramid,
        by_pyramid.from_tier,
        by_pyramid.to_tier,
        {{ tier_movement('by_pyramid.pyramid', 'by_pyramid.from_tier', 'by_pyramid.to_tier') }} as movement,
        {{ tier_rank('by_pyramid.pyramid', 'by_pyramid.from_tier') }}
        - {{ tier_rank('by_pyramid.pyramid', 'by_pyramid.to_tier') }} as tiers_moved,
        cast(by_pyramid.customers as bigint) as customers,
        cast(by_pyramid.period_revenue as numeric(16, 2)) as period_revenue,
        cast(
            case when snapshot_dates.next_snapshot_date is not null then by_pyramid.next_period_revenue end
            as numeric(16, 2)
        ) as next_period_revenue
    from by_pyramid
    inner join snapshot_dates on by_pyramid.snapshot_date = snapshot_dates.snapshot_date
)

select * from final
