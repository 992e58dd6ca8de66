{#- One row per identifier seen in any source: a shop customer id, a normalised
    e-mail, a phone in E.164 or a web visitor id, with when it was first seen, its
    priority as a customer's anchor, and why it may not link people (the guards).

    Guards against over-merging (thresholds are vars in dbt_project.yml):
    - shared mailbox: an e-mail whose local part is a role address (info@, noreply@ ...);
    - on several people: an e-mail or phone on shop records of more people (told
      apart by first name) than identity_max_people_per_identifier;
    - on too many records: an e-mail or phone on more shop records than
      identity_max_records_per_identifier;
    - shared device: a visitor id that logged in as, or gave, more accounts or e-mails
      than identity_max_claims_per_visitor.
    Placeholder phones never get here: staging makes them null. A blocked e-mail or
    phone belongs to no customer; a shared device stays an (anonymous) visitor.

    node_id is a function of the identifier alone (identifier_node_id), so an identifier keeps
    its node from build to build: int_identity_components, which is kept by the day, labels a
    component by its smallest node id, and a full rebuild gives every component the same label. -#}
with shop_customers as (
    select * from {{ ref('stg_sales__customers') }}
),

tickets as (
    select * from {{ ref('stg_service__tickets') }}
),

visitors as (
    select * from {{ ref('int_web_visitors_aggregated') }}
),

claims as (
    select * from {{ ref('int_web_visitor_claims') }}
),

shop_people as (
    select
        customer_id,
        email,
        phone_e164,
        -- first names tell people apart; last names change (marriage) and are kept by families
        lower(coalesce(first_name, '')) as person_signature
    from shop_customers
),

contact_uses as (
    select 'email:' || email as identifier_id, customer_id, person_signature
    from shop_people
    where email is not null
    union all
    select 'phone:' || phone_e164 as identifier_id, customer_id, person_signature
    from shop_people
    where phone_e164 is not null
),

contact_usage as (
    select
        identifier_id,
        count(distinct customer_id) as shop_records,
        count(distinct person_signature) as people
    from contact_uses
    group by identifier_id
),

visitor_usage as (
    select
        visitor_id,
        count(*) filter (where claim_type = 'shop_customer_id') as accounts,
        count(*) filter (where claim_type = 'email') as emails
    from claims
    group by visitor_id
),

sightings as (
    select
        'shop_customer_id' as identifier_type,
        customer_id as identifier_value,
        created_at as seen_at,
        case when account_type = 'registered' then 1 else 2 end as anchor_priority
    from shop_customers
    union all
    select 'email', email, created_at, 3 from shop_customers where email is not null
    union all
    select 'phone', phone_e164, created_at, 4 from shop_customers where phone_e164 is not null
    union all
    select 'email', requester_email, created_at, 3 from tickets where requester_email is not null
    union all
    select 'email', claim_value, first_seen_at, 3 from claims where claim_type = 'email'
    union all
    select 'visitor_id', visitor_id, first_seen_at, 5 from visitors
),

identifiers as (
    select
        identifier_type || ':' || identifier_value as identifier_id,
        identifier_type,
        identifier_value,
        min(seen_at) as first_seen_at,
        min(anchor_priority) as anchor_priority
    from sightings
    group by identifier_type, identifier_value
),

guarded as (
    select
        identifiers.*,
        case
            when identifiers.identifier_type = 'email'
                and split_part(split_part(identifiers.identifier_value, '@', 1), '+', 1) in (
                    {%- for prefix in var('identity_shared_mailbox_prefixes') %}'{{ prefix }}'{{ ', ' if not loop.last }}{% endfor -%}
                )
                then 'shared mailbox'
            when contact_usage.shop_records > {{ var('identity_max_records_per_identifier') }}
                then 'on too many records'
            when contact_usage.people > {{ var('identity_max_people_per_identifier') }}
                then 'on several people'
            when visitor_usage.accounts > {{ var('identity_max_claims_per_visitor') }}
                or visitor_usage.emails > {{ var('identity_max_claims_per_visitor') }}
                then 'shared device'
        end as blocked_reason
    from identifiers
    left join contact_usage on identifiers.identifier_id = contact_usage.identifier_id
    left join visitor_usage
        on identifiers.identifier_type = 'visitor_id'
        and identifiers.identifier_value = visitor_usage.visitor_id
),

final as (
    select
        identifier_id,
        {{ identifier_node_id('identifier_id') }} as node_id,
        identifier_type,
        identifier_value,
        first_seen_at,
        anchor_priority,
        blocked_reason,
        blocked_reason is null as is_linkable,
        -- a shared e-mail or phone is nobody's; a shared device is still a visitor
        blocked_reason is null or identifier_type = 'visitor_id' as is_kept
    from guarded
)

select * from final
