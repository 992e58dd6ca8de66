{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    pre_hook="{{ identifiers_linked_prepare() }}",
) }}
{#- One row per kept identifier (shop customer id, e-mail, phone, web visitor id)
    with the customer it belongs to and the rules that linked it.

    A customer is a connected component of identifiers. Its anchor is the member
    that best names a person: a registered shop account (the oldest, if several),
    else a guest checkout record (the oldest), else an e-mail, else a visitor id.
    customer_key = md5(anchor identifier), so a key stays the same from run to run
    as long as nothing about that customer changes.

    Kept by the day (macros/identity.sql): a build computes again the components whose
    identifiers differ from int_identity_components (component, attributes, rules) or are
    gone, before and after; component_id and anchor_priority are kept for that comparison. -#}
{%- set delta = identity_build_mode('anchor_priority') == 'delta' %}
with components as (
    select * from {{ ref('int_identity_components') }}
    {%- if delta %}
    where component_id in (select component_id from pg_temp.crm360_identity_relinked)
    {%- endif %}
),

anchors as (
    select distinct on (component_id)
        component_id,
        identifier_id as anchor_id,
        identifier_type as anchor_type,
        identifier_value as anchor_value
    from components
    order by component_id, anchor_priority, first_seen_at, identifier_id
),

final as (
    select
        components.identifier_id,
        components.identifier_type,
        components.identifier_value,
        md5(anchors.anchor_id) as customer_key,
        anchors.anchor_type,
        anchors.anchor_value,
        components.identifier_id = anchors.anchor_id as is_anchor,
        components.link_rule,
        components.blocked_reason,
        components.first_seen_at,
        components.component_id,
        components.anchor_priority
    from components
    inner join anchors on components.component_id = anchors.component_id
)

select * from final
