{{ config(
    materialized='incremental',
    incremental_strategy='append',
    pre_hook="{{ clear_affected_customers(['identity', 'profile']) }}",
    post_hook=["{{ ensure_index(['customer_key']) }}"],
) }}
{#- One row per resolved customer (a real person or company, or an anonymous
    visitor), with its anchor and every identifier linked to it.

    Incremental on the customers a build touched (int_customers_affected, reasons identity and
    profile; macros/affected_customers.sql): a key that gained or lost an identifier, or whose
    identifiers' first sightings or anchor's contacts changed, is computed again. -#}
-- depends_on: {{ ref('int_customers_affected') }}
with identifiers as (
    select * from {{ ref('int_identifiers_linked') }}
    where {{ affected_filter('customer_key', ['identity', 'profile']) }}
),

shop_customers as (
    select * from {{ ref('stg_sales__customers') }}
),

anchor_contacts as (
    -- the contact details on the anchor's own shop record, preferred as primary
    select
        identifiers.customer_key,
        shop_customers.email as anchor_email,
        shop_customers.phone_e164 as anchor_phone
    from identifiers
    inner join shop_customers on identifiers.identifier_value = shop_customers.customer_id
    where identifiers.is_anchor and identifiers.identifier_type = 'shop_customer_id'
),

grouped as (
    select
        identifiers.customer_key,
        min(identifiers.anchor_type) as anchor_type,
        min(identifiers.anchor_value) as anchor_value,
        count(*) filter (where identifiers.identifier_type = 'shop_customer_id') as shop_record_count,
        max(identifiers.identifier_value) filter (
            where identifiers.identifier_type = 'email' and identifiers.identifier_value = anchor_contacts.anchor_email
        ) as anchor_email,
        max(identifiers.identifier_value) filter (
            where identifiers.identifier_type = 'phone' and identifiers.identifier_value = anchor_contacts.anchor_phone
        ) as anchor_phone,
        (array_agg(identifiers.identifier_value order by identifiers.first_seen_at, identifiers.identifier_value)
            filter (where identifiers.identifier_type = 'email'))[1] as first_email,
        (array_agg(identifiers.identifier_value order by identifiers.first_seen_at, identifiers.identifier_value)
            filter (where identifiers.identifier_type = 'phone'))[1] as first_phone,
        count(*) filter (where identifiers.identifier_type = 'email') as email_count,
        count(*) filter (where identifiers.identifier_type = 'phone') as phone_count,
        count(*) filter (where identifiers.identifier_type = 'visitor_id') as visitor_count,
        count(*) as identifier_count,
        array_agg(identifiers.identifier_value order by identifiers.identifier_value)
            filter (where identifiers.identifier_type = 'shop_customer_id') as shop_customer_ids,
        array_agg(identifiers.identifier_value order by identifiers.identifier_value)
            filter (where identifiers.identifier_type = 'email') as emails,
        array_agg(identifiers.identifier_value order by identifiers.identifier_value)
            filter (where identifiers.identifier_type = 'phone') as phones,
        array_agg(identifiers.identifier_value order by identifiers.identifier_value)
            filter (where identifiers.identifier_type = 'visitor_id') as visitor_ids,
        array_agg(identifiers.identifier_id order by identifiers.identifier_id) as identifiers,
        min(identifiers.first_seen_at) as first_seen_at
    from identifiers
    left join anchor_contacts on identifiers.customer_key = anchor_contacts.customer_key
    group by identifiers.customer_key
),

final as (
    select
        customer_key,
        anchor_type,
        anchor_value,
        case when anchor_type = 'shop_customer_id' then anchor_value end as shop_customer_id,
        shop_record_count,
        coalesce(anchor_email, first_email) as primary_email,
        coalesce(anchor_phone, first_phone) as primary_phone,
        email_count,
        phone_count,
        visitor_count,
        identifier_count,
        shop_customer_ids,
        emails,
        phones,
        visitor_ids,
        identifiers,
        first_seen_at
    from grouped
)

select * from final
