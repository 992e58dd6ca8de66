{#- One row per kept identifier with the connected component it falls in: the
    identifiers joined, directly or through others, by used edges (A shares an
    e-mail with B, B a phone with C: one component). Computed in the database by
    intermediate.crm360_connected_components (macros/connected_components.sql). -#}
with nodes as (
    select * from {{ ref('int_identity_nodes') }}
    where is_kept
),

{#- the function takes the edges table by name (not the subquery an --empty build renders) -#}
{%- set edges = ref('int_identity_edges') %}
components as (
    select node_id, component_id
    from intermediate.crm360_connected_components('"{{ edges.schema }}"."{{ edges.identifier }}"')
),

final as (
    select
        nodes.identifier_id,
        nodes.node_id,
        nodes.identifier_type,
        nodes.identifier_value,
        nodes.first_seen_at,
        nodes.anchor_priority,
        nodes.blocked_reason,
        coalesce(components.component_id, nodes.node_id) as component_id
    from nodes
    left join components on nodes.node_id = components.node_id
)

select * from final
