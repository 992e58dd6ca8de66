{{ config(pre_hook="set local jit = off") }}
{#- One row per CRM rule of thumb that the data can measure (rule_number 1 to 5 of
    MISSION.md; rule 6, "moving 2 % of customers up one tier can raise revenue by
    half", needs an experiment, not history, and has no row), as of var('as_of_date'):
    the measured value, the range the rule expects and whether the data falls in it.

    1. share of net revenue from the top 20 % of buyers (ranked by net revenue);
    2. share of the net revenue of the last var('rules_of_thumb_recent_days') days
       (default 90) that came from customers whose first purchase was before them;
    3. a proxy only (there is no marketing spend in the data): share of known
       contacts (activity tier active, inactive or prospect) who never bought;
    4. share of existing customers who moved up at least one activity or revenue
       tier over the last var('rules_of_thumb_snapshots') snapshots (default 12);
    5. mean satisfaction of customers who moved up minus that of customers who only
       moved down, over the same snapshots.
    For 4 and 5 a move counts when the customer had already bought at the snapshot
    before it: a first purchase (prospect to active, none to a revenue tier) is
    winning a customer, not moving one up. holds is null when a value cannot be
    measured (no buyers, no ratings). -#}
{%- set recent_days = var('rules_of_thumb_recent_days', 90) -%}
{%- set movement_snapshots = var('rules_of_thumb_snapshots', 12) -%}
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
        revenue_eur
    from {{ ref('int_customer_tiers_monthly') }}
),

orders as (
    select customer_key, ordered_date, net_revenue_eur
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

current_tiers as (
    select customer_key, activity_tier, revenue_rank, revenue_eur
    from tiers
    where is_current
),

-- rule 1: top 20 % of buyers by net revenue
top_buyers as (
    select
        sum(revenue_eur) filter (where revenue_rank <= ceil(buyers * 0.2)) / nullif(sum(revenue_eur), 0)
            as measured_value,
        max(buyers) as buyers
    from (
        select revenue_rank, revenue_eur, count(*) over () as buyers
        from current_tiers
        where revenue_rank is not null
    ) as ranked
),

-- rule 2: recent revenue from existing customers (first purchase before the period)
recent_revenue as (
    select
        sum(orders.net_revenue_eur) filter (
            where customer_orders.first_order_date < {{ as_of_date() }} - {{ recent_days }}
        ) / nullif(sum(orders.net_revenue_eur), 0) as measured_value,
        sum(orders.net_revenue_eur) as revenue_eur
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

rules as (
    select
        1 as rule_number,
        'About 80 % of revenue comes from the top 20 % of customers.' as rule,
        top_buyers.measured_value,
        0.7 as expected_low,
        0.9 as expected_high,
        'Share of net revenue to date from the top ceil(20 %) of ' || coalesce(top_buyers.buyers, 0)
        || ' customers with revenue, ranked by net revenue.' as note
    from top_buyers
    union all
    select
        2,
        'Over 90 % of revenue comes from existing customers.',
        recent_revenue.measured_value,
        0.9,
        1.0,
        'Share of the net revenue of the last {{ recent_days }} days ('
        || coalesce(round(recent_revenue.revenue_eur, 2), 0)
        || ' EUR) from customers whose first purchase was before them.'
    from recent_revenue
    union all
    select
        3,
        'Most marketing budget is spent on people who are not customers.',
        contacts.measured_value,
        0.5,
        1.0,
        'Proxy, not spend (the data holds no marketing budget): share of the ' || contacts.known_contacts
        || ' known contacts (shop customers and e-mail contacts) who never bought.'
    from contacts
    union all
    select
        4,
        '5-30 % of customers can move up a tier.',
        moved_up.measured_value,
        0.05,
        0.30,
        moved_up.customers_moved_up || ' of ' || moved_up.existing_customers
        || ' customers who had bought moved up at least one activity or revenue tier'
        || ' over the last {{ movement_snapshots }} snapshots (first purchases not counted).'
    from moved_up
    union all
    select
        5,
        'Satisfaction drives moving up; barely satisfied customers defect.',
        satisfaction.up_satisfaction - satisfaction.down_satisfaction,
        0.0,
        null,
        'Mean satisfaction (1-5, per customer over rated tickets) of customers who moved up: '
        || coalesce(round(satisfaction.up_satisfaction, 2)::text, 'n/a') || ' (' || satisfaction.up_rated
        || ' rated); who only moved down: ' || coalesce(round(satisfaction.down_satisfaction, 2)::text, 'n/a')
        || ' (' || satisfaction.down_rated || ' rated). The value is the difference.'
    from satisfaction
),

final as (
    select
        rule_number,
        rule,
        cast(round(measured_value, 6) as numeric(12, 6)) as measured_value,
        cast(expected_low as numeric(12, 6)) as expected_low,
        cast(expected_high as numeric(12, 6)) as expected_high,
        case
            when measured_value is null then null
            else measured_value >= coalesce(expected_low, measured_value)
                and measured_value <= coalesce(expected_high, measured_value)
        end as holds,
        {{ as_of_date() }} as as_of_date,
        note
    from rules
)

select * from final
