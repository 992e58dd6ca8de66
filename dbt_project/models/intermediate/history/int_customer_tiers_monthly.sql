{{ config(pre_hook="set local jit = off") }}
{#- One row per customer per snapshot_date: the customer's activity and revenue
    tiers as they stood at the start of that day, computed only from facts dated
    before it (UTC dates), with the tiers at the snapshot before.

    The snapshots are those of int_tier_snapshots_dated (the first day of every month
    of the history, and var('as_of_date')); who is in which snapshot comes from
    int_customers_first_seen, the money from int_customer_spend_monthly. For a
    snapshot date D:
    - activity: active if the last purchase before D is later than D minus
      var('active_window_days'), inactive if the customer bought only earlier;
      without a purchase, prospect (shop customer or e-mail anchor) or suspect;
    - revenue: net revenue of orders before D, ranked among customers with revenue
      > 0 before D into the shares of var('revenue_tiers'); 'none' for the others;
    - a customer is in the snapshot once any source saw them before D (first shop
      record created, first order, first ticket, first web visit) and in every
      later snapshot; a customer first seen on or after D is absent.
    The rules are those of int_customers_tiered, so the as_of_date snapshot holds
    the same tiers as the current pyramid (a run loads only facts dated before its
    as_of_date; a rebuild with an earlier as_of_date ignores later facts here). The history is rebuilt from the data on
    every run: a backfill or a rebuild gives the same history.

    Work stays proportional to buyers x snapshots: orders come summed per customer
    and period; only customers with orders are expanded over snapshots (running
    sums, ranks, the tiers before); a customer without orders yet has one fixed tier
    per snapshot, its tiers before and its next period revenue follow without a
    window. The pre-hook keeps PostgreSQL from JIT-compiling the query: the planner,
    without statistics on fresh tables, overestimates it and compiling costs seconds. -#}
with entries as (
    select customer_key, waiting_tier, first_seen_date, entry_snapshot_date, first_order_snapshot_date
    from {{ ref('int_customers_first_seen') }}
),

orders_by_period as (
    select customer_key, snapshot_date, period_revenue, period_purchases, period_last_purchase_date
    from {{ ref('int_customer_spend_monthly') }}
),

snapshots as (
    select snapshot_date, next_snapshot_date
    from {{ ref('int_tier_snapshots_dated') }}
),

-- customers with orders, from the snapshot after their first order on
buyer_entries as materialized (
    select
        customer_key,
        first_seen_date,
        first_order_snapshot_date,
        -- the tier the customer waited in before the first order, if seen earlier
        case when entry_snapshot_date < first_order_snapshot_date then waiting_tier end as tier_before_order,
        waiting_tier
    from entries
    where first_order_snapshot_date is not null
),

buyer_snapshots as (
    select
        buyer_entries.customer_key,
        buyer_entries.waiting_tier,
        buyer_entries.tier_before_order,
        buyer_entries.first_seen_date,
        snapshots.snapshot_date,
        coalesce(orders_by_period.period_revenue, 0) as period_revenue,
        sum(coalesce(orders_by_period.period_revenue, 0)) over running as revenue,
        sum(coalesce(orders_by_period.period_purchases, 0)) over running as orders_completed,
        max(orders_by_period.period_last_purchase_date) over running as last_order_date,
        lead(coalesce(orders_by_period.period_revenue, 0)) over running as next_period_revenue
    from buyer_entries
    inner join snapshots on snapshots.snapshot_date >= buyer_entries.first_order_snapshot_date
    left join orders_by_period
        on buyer_entries.customer_key = orders_by_period.customer_key
        and snapshots.snapshot_date = orders_by_period.snapshot_date
    window running as (partition by buyer_entries.customer_key order by snapshots.snapshot_date)
),

buyers_ranked as (
    select
        *,
        case
            when revenue > 0
                then row_number() over (
                    partition by snapshot_date, revenue > 0 order by revenue desc, customer_key
                )
        end as revenue_rank,
        count(*) filter (where revenue > 0) over (partition by snapshot_date) as buyers
    from buyer_snapshots
),

buyers_tiered as (
    select
        *,
        case
            when orders_completed > 0
                and last_order_date > snapshot_date - {{ var('active_window_days') }}
                then 'active'
            when orders_completed > 0 then 'inactive'
            else waiting_tier
        end as activity_tier,
        case
            when revenue_rank is null then 'none'
            else {{ revenue_tier_case('revenue_rank', 'buyers') }}
        end as revenue_tier
    from buyers_ranked
),

buyers_final as (
    select
        customer_key,
        snapshot_date,
        first_seen_date,
        activity_tier,
        revenue_tier,
        coalesce(lag(activity_tier) over by_customer, tier_before_order) as previous_activity_tier,
        coalesce(
            lag(revenue_tier) over by_customer,
            case when tier_before_order is not null then 'none' end
        ) as previous_revenue_tier,
        revenue_rank,
        revenue,
        period_revenue,
        next_period_revenue,
        orders_completed,
        last_order_date
    from buyers_tiered
    window by_customer as (partition by customer_key order by snapshot_date)
),

first_period_revenue as (
    select orders_by_period.customer_key, orders_by_period.period_revenue
    from orders_by_period
    inner join entries
        on orders_by_period.customer_key = entries.customer_key
        and orders_by_period.snapshot_date = entries.first_order_snapshot_date
),

-- customers seen but without an order yet, each with the revenue of their first order period,
-- joined before the rows are spread over the snapshots (materialized: inlined, the planner joined
-- after spreading and sorted the 1.9 million rows of a medium history to merge them)
waiting_entries as materialized (
    select
        entries.customer_key,
        entries.first_seen_date,
        entries.waiting_tier,
        entries.entry_snapshot_date,
        entries.first_order_snapshot_date,
        first_period_revenue.period_revenue as first_period_revenue
    from entries
    left join first_period_revenue on entries.customer_key = first_period_revenue.customer_key
),

-- one row per snapshot before the first order, tier fixed
waiting_final as (
    select
        waiting_entries.customer_key,
        snapshots.snapshot_date,
        waiting_entries.first_seen_date,
        waiting_entries.waiting_tier as activity_tier,
        'none' as revenue_tier,
        case when snapshots.snapshot_date > waiting_entries.entry_snapshot_date then waiting_entries.waiting_tier end
            as previous_activity_tier,
        case when snapshots.snapshot_date > waiting_entries.entry_snapshot_date then 'none' end
            as previous_revenue_tier,
        null::bigint as revenue_rank,
        0 as revenue,
        0 as period_revenue,
        case
            when snapshots.next_snapshot_date is null then null
            when snapshots.next_snapshot_date = waiting_entries.first_order_snapshot_date
                then waiting_entries.first_period_revenue
            else 0
        end as next_period_revenue,
        0 as orders_completed,
        null::date as last_order_date
    from waiting_entries
    inner join snapshots
        on snapshots.snapshot_date >= waiting_entries.entry_snapshot_date
        and (
            waiting_entries.first_order_snapshot_date is null
            or snapshots.snapshot_date < waiting_entries.first_order_snapshot_date
        )
),

tiered as (
    select
        customer_key, snapshot_date, first_seen_date, activity_tier, revenue_tier, previous_activity_tier,
        previous_revenue_tier, revenue_rank, revenue, period_revenue, next_period_revenue,
        orders_completed, last_order_date
    from buyers_final
    union all
    select
        customer_key, snapshot_date, first_seen_date, activity_tier, revenue_tier, previous_activity_tier,
        previous_revenue_tier, revenue_rank, revenue, period_revenue, next_period_revenue,
        orders_completed, last_order_date
    from waiting_final
),

final as (
    select
        customer_key,
        snapshot_date,
        snapshot_date = {{ as_of_date() }} as is_current,
        activity_tier,
        revenue_tier,
        previous_activity_tier,
        previous_revenue_tier,
        cast(revenue_rank as bigint) as revenue_rank,
        revenue,
        period_revenue,
        next_period_revenue,
        cast(orders_completed as bigint) as orders_completed,
        cast(last_order_date as date) as last_order_date,
        first_seen_date
    from tiered
)

select * from final
