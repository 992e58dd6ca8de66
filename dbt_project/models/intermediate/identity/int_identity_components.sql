{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    pre_hook="{{ identity_components_prepare() }}",
) }}
{#- One row per kept identifier with the connected component it falls in: the
    identifiers joined, directly or through others, by used edges (A shares an
    e-mail with B, B a phone with C: one component), labelled by the smallest node id
    in it. Computed in the database by intermediate.crm360_connected_components
    (macros/connected_components.sql).

    Kept by the day (macros/identity.sql): each row also keeps a digest of the node's used
    edges (edges_digest) and their rules (link_rule, 'single identifier' without one); a
    build computes again only the components of nodes that are new, gone, or differ from
    their row, over the used edges among their nodes. -#}
{%- set delta = identity_build_mode('edges_digest') == 'delta' %}
{#- the function takes the edges table by name (not the subquery an --empty build renders) -#}
{%- set edges = ref('int_identity_edges') %}
{%- set graph = 'pg_temp.crm360_identity_redo_edges' if delta else '"' ~ edges.schema ~ '"."' ~ edges.identifier ~ '"' %}
with nodes as (
    select * from {{ ref('int_identity_nodes') }}
    where is_kept
    {%- if delta %}
        and node_id in (select node_id from pg_temp.crm360_identity_redo)
    {%- endif %}
),

adjacency as (
    {{ identity_node_edges(edges, nodes='pg_temp.crm360_identity_redo' if delta else none) }}
),

components as (
    select node_id, component_id
    from intermediate.crm360_connected_components('{{ graph }}')
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
        coalesce(components.component_id, nodes.node_id) as component_id,
        adjacency.edges_digest,
        coalesce(adjacency.link_rule, 'single identifier') as link_rule
    from nodes
    left join adjacency on nodes.node_id = adjacency.node_id
    left join components on nodes.node_id = components.node_id
)

select * from final
