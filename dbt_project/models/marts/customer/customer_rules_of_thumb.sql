{{ config(pre_hook="set local jit = off") }}
{#- One row per measure of the eight CRM rules of thumb of MISSION.md (Curry's
    pyramid rules), as of var('as_of_date'): the measured value, the range the rule
    expects and whether the data falls in it. A rule may have several measures (4, 7);
    measure is the key.

    1 top_20_revenue_share: share of net revenue from the top 20 % of buyers;
    2 existing_customer_revenue_share: share of the net revenue of the last
      var('rules_of_thumb_recent_days') days (default 90) from customers whose first
      purchase was before them;
    3 never_bought_contact_share: a proxy only (there is no marketing spend in the
      data): share of known contacts (activity active, inactive or prospect) who never bought;
    4 moved_up_share: share of existing customers who moved up at least one activity
      or revenue tier over the last var('rules_of_thumb_snapshots') snapshots (default 12);
      small_reached_top_share: of the customers ever in the lowest revenue tier at a
      snapshot, the share in one of the two highest tiers at a later snapshot;
    5 up_mover_satisfaction_gap: mean satisfaction of customers who moved up minus
      that of customers who only moved down, over the same snapshots;
    6 middling_satisfaction_lapse_gap: of the customers active at the snapshot before
      one of those snapshots, the share who lapsed (active to inactive: at risk or worse)
      at one of them, among the barely satisfied (mean score 2.5 to under 3.5) minus that
      among the satisfied (3.5 or more);
    7 one measure per department of customer_contact_effect: the change in net spending
      (a share) of customers after the department's contact minus that of comparable
      customers without one; marketing_segment_exports has no value (the export log
      holds no members);
    8 upgrade_two_percent_uplift: the what-if of customer_upgrade_what_if (variant
      nearest_boundary, mean revenue of the tier above): revenue change as a share of
      total revenue when var('what_if_upgrade_share') of buyers move up one tier.
    For 4 to 6 a move counts when the customer had already bought at the snapshot
    before it: a first purchase is winning a customer, not moving one up. holds is null
    when a value cannot be measured (no buyers, no ratings). -#}
{%- set recent_days = var('rules_of_thumb_recent_days', 90) -%}
{%- set movement_snapshots = var('rules_of_thumb_snapshots', 12) -%}
{%- set revenue_tier_count = var('revenue_tiers') | length -%}
with tiers as (
    select
        customer_key,
        snapshot_date,
        is_current,
        activity_tier,
        revenue_tier,
        previous_activity_tier,
        previous_revenue_tier,
        revenue_rank,
        revenue
    from {{ ref('int_customer_tiers_monthly') }}
),

orders as (
    select customer_key, ordered_date, net_revenue
    from {{ ref('int_orders_attributed') }}
    where ordered_date >= {{ as_of_date() }} - {{ recent_days }}
        and ordered_date < {{ as_of_date() }}
),

customer_orders as (
    select customer_key, first_order_date
    from {{ ref('int_customer_orders_aggregated') }}
),

ratings as (
    select customer_key, satisfaction_score
    from {{ ref('int_tickets_attributed') }}
    where customer_key is not null
        and satisfaction_score is not null
        and cast(created_at at time zone 'UTC' as date) < {{ as_of_date() }}
),

contact_effect as (
    select department, department_order, customer_group, customers, change_pct
    from {{ ref('customer_contact_effect') }}
),

what_if as (
    select variant, customers_moved, share_of_buyers_moved, uplift_mean_share, uplift_median_share,
        observed_moves, observed_change_share
    from {{ ref('customer_upgrade_what_if') }}
    where is_total
),

current_tiers as (
    select customer_key, activity_tier, revenue_rank, revenue
    from tiers
    where is_current
),

-- rule 1: top 20 % of buyers by net revenue
top_buyers as (
    select
        sum(revenue) filter (where revenue_rank <= ceil(buyers * 0.2)) / nullif(sum(revenue), 0)
            as measured_value,
        max(buyers) as buyers
    from (
        select revenue_rank, revenue, count(*) over () as buyers
        from current_tiers
        where revenue_rank is not null
    ) as ranked
),

-- rule 2: recent revenue from existing customers (first purchase before the period)
recent_revenue as (
    select
        sum(orders.net_revenue) filter (
            where customer_orders.first_order_date < {{ as_of_date() }} - {{ recent_days }}
        ) / nullif(sum(orders.net_revenue), 0) as measured_value,
        sum(orders.net_revenue) as revenue
    from orders
    left join customer_orders on orders.customer_key = customer_orders.customer_key
),

-- rule 3 (proxy): known contacts who are not customers
contacts as (
    select
        count(*) filter (where activity_tier = 'prospect')::numeric / nullif(count(*), 0) as measured_value,
        count(*) as known_contacts
    from current_tiers
    where activity_tier in ('active', 'inactive', 'prospect')
),

-- rules 4 and 5: moves into the last snapshots by customers who had bought before
window_snapshots as (
    select snapshot_date
    from (select distinct snapshot_date from tiers) as dates
    order by snapshot_date desc
    limit {{ movement_snapshots }}
),

buyer_moves as (
    select
        tiers.customer_key,
        {{ tier_movement("'activity'", 'tiers.previous_activity_tier', 'tiers.activity_tier') }} as activity_movement,
        {{ tier_movement("'revenue'", 'tiers.previous_revenue_tier', 'tiers.revenue_tier') }} as revenue_movement
    from tiers
    inner join window_snapshots on tiers.snapshot_date = window_snapshots.snapshot_date
    where tiers.previous_activity_tier in ('active', 'inactive')
),

movers as (
    select
        customer_key,
        bool_or(activity_movement = 'up' or revenue_movement = 'up') as moved_up,
        bool_or(activity_movement = 'down' or revenue_movement = 'down') as moved_down
    from buyer_moves
    group by customer_key
),

moved_up as (
    select
        count(*) filter (where moved_up)::numeric / nullif(count(*), 0) as measured_value,
        count(*) as existing_customers,
        count(*) filter (where moved_up) as customers_moved_up
    from movers
),

customer_satisfaction as (
    select customer_key, avg(satisfaction_score) as satisfaction
    from ratings
    group by customer_key
),

satisfaction as (
    select
        avg(customer_satisfaction.satisfaction) filter (where movers.moved_up) as up_satisfaction,
        count(customer_satisfaction.satisfaction) filter (where movers.moved_up) as up_rated,
        avg(customer_satisfaction.satisfaction) filter (where movers.moved_down and not movers.moved_up)
            as down_satisfaction,
        count(customer_satisfaction.satisfaction) filter (where movers.moved_down and not movers.moved_up)
            as down_rated
    from movers
    inner join customer_satisfaction on movers.customer_key = customer_satisfaction.customer_key
),

-- rule 4, second measure: customers in the lowest revenue tier at a snapshot who are
-- in one of the two highest at a later one
revenue_tier_ranks as (
    select
        customer_key,
        snapshot_date,
        {{ revenue_tier_rank('revenue_tier') }} as tier_rank
    from tiers
    where revenue_tier <> 'none'
),

first_in_lowest as (
    select customer_key, min(snapshot_date) as first_lowest_date
    from revenue_tier_ranks
    where tier_rank = {{ revenue_tier_count }}
    group by customer_key
),

lowest_reached as (
    select
        first_in_lowest.customer_key,
        bool_or(coalesce(revenue_tier_ranks.tier_rank <= 2, false)) as reached_top
    from first_in_lowest
    left join revenue_tier_ranks
        on first_in_lowest.customer_key = revenue_tier_ranks.customer_key
        and revenue_tier_ranks.snapshot_date > first_in_lowest.first_lowest_date
    group by first_in_lowest.customer_key
),

small_to_top as (
    select
        count(*) filter (where reached_top)::numeric / nullif(count(*), 0) as measured_value,
        count(*) as ever_lowest,
        count(*) filter (where reached_top) as reached_top
    from lowest_reached
),

-- rule 6: lapses from active over the snapshots, barely satisfied against satisfied
activity_moves as (
    select
        tiers.customer_key,
        bool_or(tiers.activity_tier = 'inactive') as has_lapsed
    from tiers
    inner join window_snapshots on tiers.snapshot_date = window_snapshots.snapshot_date
    where tiers.previous_activity_tier = 'active'
    group by tiers.customer_key
),

rated_lapses as (
    select
        activity_moves.has_lapsed,
        customer_satisfaction.satisfaction
    from activity_moves
    inner join customer_satisfaction on activity_moves.customer_key = customer_satisfaction.customer_key
),

defection as (
    select
        avg(has_lapsed::int) filter (where satisfaction >= 2.5 and satisfaction < 3.5) as middling_lapse_rate,
        count(*) filter (where satisfaction >= 2.5 and satisfaction < 3.5) as middling_rated,
        avg(has_lapsed::int) filter (where satisfaction >= 3.5) as satisfied_lapse_rate,
        count(*) filter (where satisfaction >= 3.5) as satisfied_rated
    from rated_lapses
),

-- rule 7: per department, contacted customers' spending change against the others'
department_effect as (
    select
        department,
        department_order,
        max(change_pct) filter (where customer_group = 'contacted') as contacted_change_pct,
        max(change_pct) filter (where customer_group = 'not_contacted') as not_contacted_change_pct,
        max(customers) filter (where customer_group = 'contacted') as contacted_customers,
        max(customers) filter (where customer_group = 'not_contacted') as not_contacted_customers
    from contact_effect
    group by department, department_order
),

-- rule 8: the what-if's totals per variant
what_if_totals as (
    select
        max(uplift_mean_share) filter (where variant = 'nearest_boundary') as boundary_mean_share,
        max(uplift_median_share) filter (where variant = 'nearest_boundary') as boundary_median_share,
        max(customers_moved) filter (where variant = 'nearest_boundary') as boundary_moved,
        max(share_of_buyers_moved) filter (where variant = 'nearest_boundary') as boundary_moved_share,
        max(uplift_mean_share) filter (where variant = 'segment') as segment_mean_share,
        max(customers_moved) filter (where variant = 'segment') as segment_moved,
        max(observed_moves) filter (where variant = 'nearest_boundary') as observed_moves,
        max(observed_change_share) filter (where variant = 'nearest_boundary') as observed_change_share
    from what_if
),

rules as (
    select
        1 as rule_number,
        'top_20_revenue_share' as measure,
        'About 80 % of revenue comes from the top 20 % of customers.' as rule,
        top_buyers.measured_value,
        0.7 as expected_low,
        0.9 as expected_high,
        false as is_low_exclusive,
        'Share of net revenue to date from the top ceil(20 %) of ' || coalesce(top_buyers.buyers, 0)
        || ' customers with revenue, ranked by net revenue.' as note
    from top_buyers
    union all
    select
        2,
        'existing_customer_revenue_share',
        'Over 90 % of revenue comes from existing customers.',
        recent_revenue.measured_value,
        0.9,
        1.0,
        false,
        'Share of the net revenue of the last {{ recent_days }} days ('
        || coalesce(round(recent_revenue.revenue, 2), 0)
        || ' ' || '{{ var("reporting_currency") }}' || ') from customers whose first purchase was before them.'
    from recent_revenue
    union all
    select
        3,
        'never_bought_contact_share',
        'Most marketing budget is spent on people who are not customers.',
        contacts.measured_value,
        0.5,
        1.0,
        false,
        'Proxy, not spend (the data holds no marketing budget): share of the ' || contacts.known_contacts
        || ' known contacts (shop customers and e-mail contacts) who never bought.'
    from contacts
    union all
    select
        4,
        'moved_up_share',
        '5-30 % of customers can move up a tier.',
        moved_up.measured_value,
        0.05,
        0.30,
        false,
        moved_up.customers_moved_up || ' of ' || moved_up.existing_customers
        || ' customers who had bought moved up at least one activity or revenue tier'
        || ' over the last {{ movement_snapshots }} snapshots (first purchases not counted).'
    from moved_up
    union all
    select
        4,
        'small_reached_top_share',
        'Some small customers can reach the top.',
        small_to_top.measured_value,
        0.0,
        null,
        true,
        small_to_top.reached_top || ' of ' || small_to_top.ever_lowest
        || ' customers in the lowest revenue tier at a snapshot were in one of the two highest'
        || ' at a later snapshot (whole tier history). Holds when any did.'
    from small_to_top
    union all
    select
        5,
        'up_mover_satisfaction_gap',
        'Satisfaction is the root of moving up.',
        satisfaction.up_satisfaction - satisfaction.down_satisfaction,
        0.0,
        null,
        true,
        'Mean satisfaction (1-5, per customer over rated tickets) of customers who moved up: '
        || coalesce(round(satisfaction.up_satisfaction, 2)::text, 'n/a') || ' (' || satisfaction.up_rated
        || ' rated); who only moved down: ' || coalesce(round(satisfaction.down_satisfaction, 2)::text, 'n/a')
        || ' (' || satisfaction.down_rated || ' rated). The value is the difference; holds when above 0.'
    from satisfaction
    union all
    select
        6,
        'middling_satisfaction_lapse_gap',
        'Barely satisfied customers are the ones who defect.',
        defection.middling_lapse_rate - defection.satisfied_lapse_rate,
        0.0,
        null,
        true,
        'Of the customers active before one of the last {{ movement_snapshots }} snapshots, share who lapsed'
        || ' (active to inactive) at one: barely satisfied (mean score 2.5 to under 3.5) '
        || coalesce(round(defection.middling_lapse_rate, 4)::text, 'n/a') || ' (' || defection.middling_rated
        || ' rated); satisfied (3.5 or more) ' || coalesce(round(defection.satisfied_lapse_rate, 4)::text, 'n/a')
        || ' (' || defection.satisfied_rated || ' rated). The value is the difference; holds when above 0.'
    from defection
    union all
    select
        7,
        'department_' || department_effect.department,
        'Marketing, sales and other departments change customer behaviour.',
        (department_effect.contacted_change_pct - department_effect.not_contacted_change_pct) / 100.0,
        0.0,
        null,
        true,
        'customer_contact_effect, ' || department_effect.department || ': net spending change after the contact '
        || coalesce(department_effect.contacted_change_pct::text || ' %', 'n/a') || ' ('
        || department_effect.contacted_customers || ' customers) against '
        || coalesce(department_effect.not_contacted_change_pct::text || ' %', 'n/a') || ' ('
        || department_effect.not_contacted_customers
        || ' comparable customers without one). The value is the difference as a share; holds when above 0.'
    from department_effect
    union all
    select
        7,
        'department_marketing',
        'Marketing, sales and other departments change customer behaviour.',
        null,
        0.0,
        null,
        true,
        'Not measurable: the segment export log records the segment and a row count, not who was in the'
        || ' exported list, so marketing''s contacts cannot be told from the others.'
    union all
    select
        8,
        'upgrade_two_percent_uplift',
        'Moving 2 % of customers up one tier can raise revenue by half.',
        what_if_totals.boundary_mean_share,
        0.4,
        0.6,
        false,
        'What-if on the run date''s revenue pyramid (customer_upgrade_what_if): '
        || coalesce(what_if_totals.boundary_moved, 0) || ' buyers ('
        || coalesce(round(100 * what_if_totals.boundary_moved_share, 2), 0)
        || ' %) closest below each tier boundary given the mean revenue to date of the tier above: '
        || coalesce(round(100 * what_if_totals.boundary_mean_share, 2)::text || ' %', 'n/a')
        || ' more revenue (median of the tier above: '
        || coalesce(round(100 * what_if_totals.boundary_median_share, 2)::text || ' %', 'n/a')
        || '; the ' || coalesce(what_if_totals.segment_moved, 0) || ' upgrade-segment members: '
        || coalesce(round(100 * what_if_totals.segment_mean_share, 2)::text || ' %', 'n/a')
        || '). Observed: ' || coalesce(what_if_totals.observed_moves, 0)
        || ' one-tier moves up over the last {{ movement_snapshots }} snapshots added '
        || coalesce(round(100 * what_if_totals.observed_change_share, 2)::text || ' %', 'n/a')
        || ' of revenue to date in the periods of the moves.'
    from what_if_totals
),

final as (
    select
        rule_number,
        measure,
        rule,
        cast(round(measured_value, 6) as numeric(12, 6)) as measured_value,
        cast(expected_low as numeric(12, 6)) as expected_low,
        cast(expected_high as numeric(12, 6)) as expected_high,
        is_low_exclusive,
        case
            when measured_value is null then null
            when is_low_exclusive and measured_value <= expected_low then false
            else measured_value >= coalesce(expected_low, measured_value)
                and measured_value <= coalesce(expected_high, measured_value)
        end as holds,
        {{ as_of_date() }} as as_of_date,
        note
    from rules
)

select * from final
