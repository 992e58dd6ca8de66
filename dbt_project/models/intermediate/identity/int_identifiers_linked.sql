{#- One row per kept identifier (shop customer id, e-mail, phone, web visitor id)
    with the customer it belongs to and the rules that linked it.

    A customer is a connected component of identifiers. Its anchor is the member
    that best names a person: a registered shop account (the oldest, if several),
    else a guest checkout record (the oldest), else an e-mail, else a visitor id.
    customer_key = md5(anchor identifier), so a key stays the same from run to run
    as long as nothing about that customer changes. -#}
with components as (
    select * from {{ ref('int_identity_components') }}
),

edges as (
    select * from {{ ref('int_identity_edges') }}
    where is_used
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

edge_ends as (
    select from_identifier_id as identifier_id, link_rule from edges
    union
    select to_identifier_id as identifier_id, link_rule from edges
),

rules as (
    select
        identifier_id,
        string_agg(link_rule, '; ' order by link_rule) as link_rule
    from edge_ends
    group by identifier_id
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
        coalesce(rules.link_rule, 'single identifier') as link_rule,
        components.blocked_reason,
        components.first_seen_at
    from components
    inner join anchors on components.component_id = anchors.component_id
    left join rules on components.identifier_id = rules.identifier_id
)

select * from final
