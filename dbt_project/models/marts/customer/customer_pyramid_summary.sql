{#- index for the BI queries in docs/bi_queries.sql -#}
{{ config(pre_hook="set local jit = off",
          post_hook=["{{ ensure_index(['snapshot_date', 'pyramid']) }}"]) }}
{#- One row per snapshot_date, pyramid and tier: how many customers the tier held
    at that date and what share of the revenue they had brought by then.

    Snapshots are those of int_customer_tiers_monthly (the first day of each month,
    and the run's as_of_date, marked is_current). The current snapshot is the pyramid
    of customer_pyramid; a tier without customers at a date has no row. -#}
with tiers as (
    select snapshot_date, activity_tier, revenue_tier, revenue
    from {{ ref('int_customer_tiers_monthly') }}
),

-- one pass over the snapshots for both pyramids, unpivoted afterwards
by_tiers as (
    select
        snapshot_date,
        activity_tier,
        revenue_tier,
        count(*) as customers,
        sum(revenue) as revenue
    from tiers
    group by snapshot_date, activity_tier, revenue_tier
),

by_tier as (
    select
        snapshot_date,
        'activity' as pyramid,
        activity_tier as tier,
        sum(customers) as customers,
        sum(revenue) as revenue
    from by_tiers
    group by snapshot_date, activity_tier
    union all
    select
        snapshot_date,
        'revenue' as pyramid,
        revenue_tier as tier,
        sum(customers) as customers,
        sum(revenue) as revenue
    from by_tiers
    group by snapshot_date, revenue_tier
),

final as (
    select
        snapshot_date,
        snapshot_date = {{ as_of_date() }} as is_current,
        {{ as_of_date() }} as as_of_date,
        pyramid,
        tier,
        {{ tier_rank('pyramid', 'tier') }} as tier_order,
        cast(customers as bigint) as customers,
        cast(revenue as numeric(16, 2)) as revenue,
        cast(customers::numeric / sum(customers) over (partition by snapshot_date, pyramid) as numeric(7, 6))
            as share_of_customers,
        cast(
            coalesce(revenue / nullif(sum(revenue) over (partition by snapshot_date, pyramid), 0), 0)
            as numeric(7, 6)
        ) as share_of_revenue
    from by_tier
)

select * from final
