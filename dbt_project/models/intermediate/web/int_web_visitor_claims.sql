{{ config(
    materialized='incremental',
    unique_key=['visitor_id', 'claim_type', 'claim_value'],
    incremental_strategy='delete+insert',
    pre_hook="{{ clear_for_rebuild('web') }}",
    post_hook=["{{ ensure_index(['visitor_id']) }}", "{{ ensure_index(['loaded_at']) }}"],
) }}
{#- One row per web visitor and identity it claimed: a login as a shop customer or an
    e-mail it gave (newsletter, sign-up), with when and how often. These are the web's
    identity evidence; incremental like the visitors. -#}
with events as (
    select * from {{ ref('stg_web__events') }}
    where {{ loaded_since_last_build('loaded_at', source_name='web') }}
        and (customer_id is not null or email is not null)
),

claims as (
    select visitor_id, 'shop_customer_id' as claim_type, customer_id as claim_value, occurred_at, loaded_at
    from events
    where customer_id is not null
    union all
    select visitor_id, 'email' as claim_type, email as claim_value, occurred_at, loaded_at
    from events
    where email is not null
),

batch as (
    select
        visitor_id,
        claim_type,
        claim_value,
        min(occurred_at) as first_seen_at,
        max(occurred_at) as last_seen_at,
        count(*) as event_count,
        max(loaded_at) as loaded_at
    from claims
    group by visitor_id, claim_type, claim_value
),

{% if is_incremental() %}
previous as (
    select
        built.visitor_id,
        built.claim_type,
        built.claim_value,
        built.first_seen_at,
        built.last_seen_at,
        built.event_count,
        built.loaded_at
    from {{ this }} as built
    inner join batch
        on built.visitor_id = batch.visitor_id
        and built.claim_type = batch.claim_type
        and built.claim_value = batch.claim_value
),

combined as (
    select * from batch
    union all
    select * from previous
),
{% else %}
combined as (
    select * from batch
),
{% endif %}

final as (
    select
        visitor_id,
        claim_type,
        claim_value,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at,
        sum(event_count) as event_count,
        max(loaded_at) as loaded_at
    from combined
    group by visitor_id, claim_type, claim_value
)

select * from final
