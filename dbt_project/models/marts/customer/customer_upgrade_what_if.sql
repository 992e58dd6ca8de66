{{ config(pre_hook="set local jit = off") }}
{#- Rule 8 of MISSION.md ("moving 2 % of customers up one tier can raise revenue by
    half") as arithmetic on the revenue pyramid of var('as_of_date'): one row per
    variant and tier pair (a tier of var('revenue_tiers') and the tier above it),
    plus one total row per variant.

    Buyers are the customers with net revenue to date above zero (the ranked ones).
    var('what_if_upgrade_share') of them (default 2 %, rounded) are moved up one tier:
    - variant 'nearest_boundary': the share is split over the tiers below the top in
      proportion to their customers (rounded per tier), and in each tier the customers
      closest below its upper boundary (the highest revenue in the tier) move;
    - variant 'segment': the members of the segment var('what_if_upgrade_segment')
      (default upgrade_candidates) who have revenue, whatever their number.
    A mover is given the mean (and, conservatively, the median) net revenue to date
    of the customers of the tier above; the uplift is that minus the mover's own, as
    a share of all buyers' net revenue to date. Beside it, what happened: customers
    who moved up exactly this tier pair at one of the last var('rules_of_thumb_snapshots')
    snapshots and the net revenue they added in the period of the move (the same in
    both variants). -#}
{%- set upgrade_share = var('what_if_upgrade_share', 0.02) -%}
{%- set segment_name = var('what_if_upgrade_segment', 'upgrade_candidates') -%}
{%- set movement_snapshots = var('rules_of_thumb_snapshots', 12) -%}
{%- set tiers = var('revenue_tiers') -%}
with tiers as (
    select
        customer_key,
        snapshot_date,
        is_current,
        revenue_tier,
        previous_revenue_tier,
        revenue_rank,
        revenue,
        period_revenue
    from {{ ref('int_customer_tiers_monthly') }}
),

segment_members as (
    select customer_key
    from {{ ref('segment_members') }}
    where segment_name = '{{ segment_name }}'
),

-- the tier pairs of the pyramid, from the var: tier (rank n) moves into tier n - 1
tier_pairs as (
    {%- if tiers | length > 1 %}
    select *
    from (
        values
        {%- for t in tiers[1:] %}
            ({{ loop.index + 1 }}, '{{ t["tier"] }}', '{{ tiers[loop.index0]["tier"] }}'){{ "," if not loop.last }}
        {%- endfor %}
    ) as pairs (from_tier_rank, from_tier, to_tier)
    {%- else %}
    select null::integer as from_tier_rank, null::text as from_tier, null::text as to_tier
    where false
    {%- endif %}
),

variants as (
    select *
    from (values (1, 'nearest_boundary'), (2, 'segment')) as listed (variant_order, variant)
),

buyers as (
    select
        customer_key,
        revenue_tier,
        {{ revenue_tier_rank('revenue_tier') }} as tier_rank,
        revenue_rank,
        revenue
    from tiers
    where is_current and revenue_rank is not null
),

totals as (
    select
        count(*) as buyers,
        count(*) filter (where tier_rank > 1) as buyers_below_top,
        sum(revenue) as revenue
    from buyers
),

tier_stats as (
    select
        tier_rank,
        count(*) as customers,
        avg(revenue) as mean_revenue,
        cast(percentile_cont(0.5) within group (order by revenue) as numeric) as median_revenue
    from buyers
    group by tier_rank
),

-- nearest_boundary: each tier's part of the share, its highest earners
tier_quotas as (
    select
        tier_stats.tier_rank,
        round(
            {{ upgrade_share }} * totals.buyers * tier_stats.customers / nullif(totals.buyers_below_top, 0)
        ) as quota
    from tier_stats
    cross join totals
    where tier_stats.tier_rank > 1
),

ranked_in_tier as (
    select
        customer_key,
        tier_rank,
        revenue,
        row_number() over (partition by tier_rank order by revenue_rank) as place_in_tier
    from buyers
    where tier_rank > 1
),

movers as (
    select
        'nearest_boundary' as variant,
        ranked_in_tier.customer_key,
        ranked_in_tier.tier_rank,
        ranked_in_tier.revenue
    from ranked_in_tier
    inner join tier_quotas on ranked_in_tier.tier_rank = tier_quotas.tier_rank
    where ranked_in_tier.place_in_tier <= tier_quotas.quota
    union all
    select
        'segment' as variant,
        buyers.customer_key,
        buyers.tier_rank,
        buyers.revenue
    from buyers
    inner join segment_members on buyers.customer_key = segment_members.customer_key
    where buyers.tier_rank > 1
),

moved as (
    select
        movers.variant,
        movers.tier_rank as from_tier_rank,
        count(*) as customers_moved,
        sum(movers.revenue) as movers_revenue,
        sum(target.mean_revenue - movers.revenue) as uplift_mean,
        sum(target.median_revenue - movers.revenue) as uplift_median
    from movers
    inner join tier_stats as target on target.tier_rank = movers.tier_rank - 1
    group by movers.variant, movers.tier_rank
),

-- what happened: moves of exactly one tier up into the last snapshots, by customers
-- who were already buyers
window_snapshots as (
    select snapshot_date
    from (select distinct snapshot_date from tiers) as dates
    order by snapshot_date desc
    limit {{ movement_snapshots }}
),

observed as (
    select
        {{ revenue_tier_rank('tiers.previous_revenue_tier') }} as from_tier_rank,
        count(*) as observed_moves,
        sum(tiers.period_revenue) as observed_revenue_change
    from tiers
    inner join window_snapshots on tiers.snapshot_date = window_snapshots.snapshot_date
    where tiers.previous_revenue_tier <> 'none'
        and {{ revenue_tier_rank('tiers.revenue_tier') }} = {{ revenue_tier_rank('tiers.previous_revenue_tier') }} - 1
    group by 1
),

pair_rows as (
    select
        variants.variant_order,
        variants.variant,
        tier_pairs.from_tier_rank,
        tier_pairs.from_tier,
        tier_pairs.to_tier,
        false as is_total,
        coalesce(from_stats.customers, 0) as customers_in_from_tier,
        coalesce(to_stats.customers, 0) as customers_in_to_tier,
        to_stats.mean_revenue as target_mean_revenue,
        to_stats.median_revenue as target_median_revenue,
        coalesce(moved.customers_moved, 0) as customers_moved,
        coalesce(moved.movers_revenue, 0) as movers_revenue,
        coalesce(moved.uplift_mean, 0) as uplift_mean,
        coalesce(moved.uplift_median, 0) as uplift_median,
        coalesce(observed.observed_moves, 0) as observed_moves,
        coalesce(observed.observed_revenue_change, 0) as observed_revenue_change
    from variants
    cross join tier_pairs
    left join tier_stats as from_stats on tier_pairs.from_tier_rank = from_stats.tier_rank
    left join tier_stats as to_stats on tier_pairs.from_tier_rank - 1 = to_stats.tier_rank
    left join moved
        on variants.variant = moved.variant
        and tier_pairs.from_tier_rank = moved.from_tier_rank
    left join observed on tier_pairs.from_tier_rank = observed.from_tier_rank
),

total_rows as (
    select
        variant_order,
        variant,
        null::integer as from_tier_rank,
        null::text as from_tier,
        null::text as to_tier,
        true as is_total,
        sum(customers_in_from_tier) as customers_in_from_tier,
        null::bigint as customers_in_to_tier,
        null::numeric as target_mean_revenue,
        null::numeric as target_median_revenue,
        sum(customers_moved) as customers_moved,
        sum(movers_revenue) as movers_revenue,
        sum(uplift_mean) as uplift_mean,
        sum(uplift_median) as uplift_median,
        sum(observed_moves) as observed_moves,
        sum(observed_revenue_change) as observed_revenue_change
    from pair_rows
    group by variant_order, variant
),

all_rows as (
    select * from pair_rows
    union all
    select * from total_rows
),

final as (
    select
        all_rows.variant,
        all_rows.variant_order,
        all_rows.from_tier,
        all_rows.to_tier,
        cast(all_rows.from_tier_rank as integer) as from_tier_rank,
        all_rows.is_total,
        {{ as_of_date() }} as as_of_date,
        cast(coalesce(totals.buyers, 0) as bigint) as buyers,
        cast(coalesce(totals.revenue, 0) as numeric(16, 2)) as buyers_revenue,
        cast(all_rows.customers_in_from_tier as bigint) as customers_in_from_tier,
        cast(all_rows.customers_in_to_tier as bigint) as customers_in_to_tier,
        cast(all_rows.customers_moved as bigint) as customers_moved,
        cast(all_rows.customers_moved::numeric / nullif(totals.buyers, 0) as numeric(12, 6))
            as share_of_buyers_moved,
        cast(all_rows.movers_revenue as numeric(16, 2)) as movers_revenue,
        cast(all_rows.target_mean_revenue as numeric(16, 2)) as target_mean_revenue,
        cast(all_rows.target_median_revenue as numeric(16, 2)) as target_median_revenue,
        cast(all_rows.uplift_mean as numeric(16, 2)) as uplift_mean,
        cast(all_rows.uplift_median as numeric(16, 2)) as uplift_median,
        cast(all_rows.uplift_mean / nullif(totals.revenue, 0) as numeric(12, 6)) as uplift_mean_share,
        cast(all_rows.uplift_median / nullif(totals.revenue, 0) as numeric(12, 6))
            as uplift_median_share,
        cast(all_rows.observed_moves as bigint) as observed_moves,
        cast(all_rows.observed_revenue_change as numeric(16, 2)) as observed_revenue_change,
        cast(all_rows.observed_revenue_change / nullif(totals.revenue, 0) as numeric(12, 6))
            as observed_change_share
    from all_rows
    cross join totals
)

select * from final
