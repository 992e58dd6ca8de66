{#- The identity graph kept by the day: int_identity_components and int_identifiers_linked.

    Both are incremental models that find what changed by comparing their inputs with their own
    rows, not with a watermark: the identity graph's inputs (int_identity_nodes and
    int_identity_edges) are computed whole from staging, so there is no loaded_at to read
    from. A model's rows describe the graph as its last build saw it; a build that fails leaves
    them as they were, and the next build compares against those.

    - int_identity_components keeps, per kept identifier, what its component depends on: its
      attributes and a digest of its used edges (the other end and the rule of each). A node
      whose row differs from what the inputs say now (new, gone, other attributes, an edge more
      or less) is touched; its component as last built is computed again, all of it (a node
      that lost an edge may have split it off), over the used edges among those nodes. A used
      edge now from such a node leads to a touched node or to one of the same old component,
      so the nodes computed again hold whole components of today's graph; the others keep
      their label, their smallest node id, as a full rebuild would give them.
    - int_identifiers_linked keeps each identifier's component label, attributes and rules. An
      identifier whose row differs from int_identity_components' (or that is gone) names its
      component before and after; those components' anchors and keys are computed again.
    A first build, a full refresh, or a table built before it kept these columns computes
    everything. -#}

{#- An identifier's node id: the first 64 bits of its md5, the same on every build. A collision
    of two identifiers fails int_identity_nodes' unique test on node_id. -#}
{% macro identifier_node_id(column) -%}
    ('x' || left(md5({{ column }}), 16))::bit(64)::bigint
{%- endmacro %}

{#- 'delta' when this identity model can update its rows from the changes: it was built before
    with `column`, one of the columns it keeps to compare with; else 'rebuild'. -#}
{% macro identity_build_mode(column) -%}
    {%- if not is_incremental() or not execute -%}
        {{ return('rebuild') }}
    {%- endif -%}
    {{ return('delta' if column in column_names(this) else 'rebuild') }}
{%- endmacro %}

{#- The names of a relation's columns as the database has them (none when not executing or no
    relation): what a model built by an earlier version of crm360 lacks. -#}
{% macro column_names(relation) -%}
    {%- if not execute or relation is none -%}
        {{ return([]) }}
    {%- endif -%}
    {{ return(adapter.get_columns_in_relation(relation) | map(attribute='name') | list) }}
{%- endmacro %}

{#- Per node on a used edge of `edges`: a digest of those edges (the other end and the rule of
    each, xor of their 64-bit hashes: an edge more or less changes it) and, `with_rules`, the rules
    (link_rule). An edge's (other end, rule) is unique per node: the unique edges have one
    direction per rule. `nodes`: a relation of node ids to keep to, or none for every node. -#}
{% macro identity_node_edges(edges, with_rules=true, nodes=none) -%}
    select
        node_id,
        bit_xor(hashtextextended(other_id::text || ' ' || link_rule, 0)) as edges_digest
        {%- if with_rules %},
        string_agg(distinct link_rule, '; ' order by link_rule) as link_rule
        {%- endif %}
    from (
        select node_a as node_id, node_b as other_id, link_rule from {{ edges }}
        where is_used {%- if nodes is not none %} and node_a in (select node_id from {{ nodes }}){% endif %}
        union all
        select node_b, node_a, link_rule from {{ edges }}
        where is_used {%- if nodes is not none %} and node_b in (select node_id from {{ nodes }}){% endif %}
    ) as ends
    group by node_id
{%- endmacro %}

{#- The pre-hook of int_identity_components, in its transaction: on a delta, stage the nodes whose
    component is computed again (crm360_identity_redo: the touched nodes and every node of their
    components as last built) and the used edges among them (crm360_identity_redo_edges), and
    delete those nodes' rows. -#}
{% macro identity_components_prepare() -%}
    {%- set edges = ref('int_identity_edges') -%}
    {%- if identity_build_mode('edges_digest') == 'delta' -%}
    drop table if exists pg_temp.crm360_identity_redo;
    create temporary table crm360_identity_redo on commit drop as
    with adjacency as (
        {{ identity_node_edges(edges, with_rules=false) }}
    ),

    now as (
        select
            nodes.node_id, nodes.identifier_id, nodes.first_seen_at, nodes.anchor_priority, nodes.blocked_reason,
            adjacency.edges_digest
        from {{ ref('int_identity_nodes') }} as nodes
        left join adjacency on nodes.node_id = adjacency.node_id
        where nodes.is_kept
    ),

    touched as (
        select coalesce(now.node_id, built.node_id) as node_id, built.component_id
        from now
        full join {{ this }} as built on now.node_id = built.node_id
        where now.node_id is null or built.node_id is null
            or (now.identifier_id, now.first_seen_at, now.anchor_priority, now.blocked_reason, now.edges_digest)
            is distinct from (built.identifier_id, built.first_seen_at, built.anchor_priority, built.blocked_reason,
                              built.edges_digest)
    )

    select node_id from touched
    union
    select node_id from {{ this }}
    where component_id in (select component_id from touched where component_id is not null);
    analyze pg_temp.crm360_identity_redo;
    delete from {{ this }} where node_id in (select node_id from pg_temp.crm360_identity_redo);
    drop table if exists pg_temp.crm360_identity_redo_edges;
    create temporary table crm360_identity_redo_edges on commit drop as
    select node_a, node_b from {{ edges }}
    where is_used and node_a in (select node_id from pg_temp.crm360_identity_redo);
    analyze pg_temp.crm360_identity_redo_edges
    {%- elif is_incremental() -%}
    delete from {{ this }}
    {%- else -%}
    select 1
    {%- endif -%}
{%- endmacro %}

{#- The pre-hook of int_identifiers_linked, in its transaction: on a delta, stage the components
    whose identifiers changed against int_identity_components, before and after
    (crm360_identity_relinked), and delete those components' rows. -#}
{% macro identifiers_linked_prepare() -%}
    {%- if identity_build_mode('anchor_priority') == 'delta' -%}
    drop table if exists pg_temp.crm360_identity_relinked;
    create temporary table crm360_identity_relinked on commit drop as
    with changed as (
        select components.component_id as component_now, built.component_id as component_before
        from {{ ref('int_identity_components') }} as components
        full join {{ this }} as built on components.identifier_id = built.identifier_id
        where components.identifier_id is null or built.identifier_id is null
            or (components.component_id, components.first_seen_at, components.anchor_priority,
                components.blocked_reason, components.link_rule)
            is distinct from (built.component_id, built.first_seen_at, built.anchor_priority, built.blocked_reason,
                              built.link_rule)
    )

    select component_now as component_id from changed where component_now is not null
    union
    select component_before from changed where component_before is not null;
    analyze pg_temp.crm360_identity_relinked;
    delete from {{ this }} where component_id in (select component_id from pg_temp.crm360_identity_relinked)
    {%- elif is_incremental() -%}
    delete from {{ this }}
    {%- else -%}
    select 1
    {%- endif -%}
{%- endmacro %}
