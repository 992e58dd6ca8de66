{#- One row per customer any source saw before var('as_of_date') (UTC dates): when first seen
    (first shop record created, first order, first ticket, first web visit), the snapshot
    of int_tier_snapshots_dated they enter the tier history in (the first snapshot after
    first sight; the first snapshot for records older than the history), the snapshot
    after their first order (null without orders) and the tier they wait in until then:
    prospect for a shop customer or e-mail anchor, suspect for the others. -#}
with customers as (
    select customer_key, anchor_type
    from {{ ref('int_customers_resolved') }}
),

spend as (
    select customer_key, snapshot_date, period_first_order_date
    from {{ ref('int_customer_spend_monthly') }}
),

snapshots as (
    select first_snapshot_date
    from {{ ref('int_tier_snapshots_dated') }}
),

ticket_customers as (
    select customer_key, first_ticket_at
    from {{ ref('int_customer_tickets_aggregated') }}
),

web_customers as (
    {{ customer_first_web_visits() }}
),

shop_ids as (
    select identifier_value as shop_customer_id, customer_key
    from {{ ref('int_identifiers_linked') }}
    where identifier_type = 'shop_customer_id'
),

shop_customers as (
    select customer_id as shop_customer_id, created_at
    from {{ ref('stg_sales__customers') }}
),

order_firsts as (
    select
        customer_key,
        min(period_first_order_date) as first_order_date,
        min(snapshot_date) as first_order_snapshot_date
    from spend
    group by customer_key
),

shop_records as (
    select
        shop_ids.customer_key,
        cast(shop_customers.created_at at time zone 'UTC' as date) as created_date
    from shop_ids
    inner join shop_customers on shop_ids.shop_customer_id = shop_customers.shop_customer_id
),

sightings as (
    select customer_key, created_date as seen_date from shop_records
    union all
    select customer_key, first_order_date from order_firsts
    union all
    select customer_key, cast(first_ticket_at at time zone 'UTC' as date) from ticket_customers
    union all
    select customer_key, cast(first_web_visit_at at time zone 'UTC' as date) from web_customers
),

first_seen as (
    select customer_key, min(seen_date) as first_seen_date
    from sightings
    where seen_date < {{ as_of_date() }}
    group by customer_key
),

final as (
    select
        customers.customer_key,
        case when customers.anchor_type in ('shop_customer_id', 'email') then 'prospect' else 'suspect' end
            as waiting_tier,
        first_seen.first_seen_date,
        -- the first snapshot after first sight (the first snapshot for older records)
        greatest(
            (select min(first_snapshot_date) from snapshots),
            least(
                cast(date_trunc('month', cast(first_seen.first_seen_date as timestamp)) + interval '1 month' as date),
                {{ as_of_date() }}
            )
        ) as entry_snapshot_date,
        order_firsts.first_order_snapshot_date
    from customers
    inner join first_seen on customers.customer_key = first_seen.customer_key
    left join order_firsts on customers.customer_key = order_firsts.customer_key
)

select * from final
