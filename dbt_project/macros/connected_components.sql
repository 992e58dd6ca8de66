{#- Connected components of an undirected graph, in the database.

    `crm360_connected_components(edges)` takes a relation with bigint columns
    node_a and node_b and returns (node_id, component_id) for every node on an
    edge, component_id being the smallest node id of its component. Nodes on no
    edge are not returned: they are components of their own.

    Min-label propagation with pointer jumping: each round every node takes the
    smallest label among its neighbours, then labels are shortcut to their
    label's label until stable. Labels only shrink and stay inside a component,
    so the loop ends with every node labelled by its component's minimum; with the
    shortcuts the rounds grow with the logarithm of the component diameter, not
    the diameter. Created by an on-run-start hook. -#}
{% macro create_connected_components_function() -%}
create schema if not exists intermediate;
create or replace function intermediate.crm360_connected_components(edges regclass)
returns table (node_id bigint, component_id bigint)
language plpgsql
as $fn$
declare
    changed bigint;
    rounds integer := 0;
begin
    drop table if exists pg_temp.crm360_cc_edges;
    drop table if exists pg_temp.crm360_cc_labels;
    -- the rounds are hash joins and aggregates over every edge: keep them in memory
    perform set_config('work_mem', '256MB', true);
    execute format(
        'create temp table crm360_cc_edges as '
        'select node_a as a, node_b as b from %1$s where node_a <> node_b '
        'union all select node_b, node_a from %1$s where node_a <> node_b', edges);
    create temp table crm360_cc_labels as
        select a as node, least(a, min(b)) as label from pg_temp.crm360_cc_edges group by a;
    alter table pg_temp.crm360_cc_labels add primary key (node);
    analyze pg_temp.crm360_cc_edges;
    analyze pg_temp.crm360_cc_labels;
    loop
        rounds := rounds + 1;
        update pg_temp.crm360_cc_labels as l
        set label = m.label
        from (
            select e.a as node, min(n.label) as label
            from pg_temp.crm360_cc_edges as e
            inner join pg_temp.crm360_cc_labels as n on n.node = e.b
            group by e.a
        ) as m
        where m.node = l.node and m.label < l.label;
        get diagnostics changed = row_count;
        loop
            update pg_temp.crm360_cc_labels as l
            set label = p.label
            from pg_temp.crm360_cc_labels as p
            where p.node = l.label and p.label < l.label;
            exit when not found;
        end loop;
        exit when changed = 0;
    end loop;
    raise notice 'crm360_connected_components: % rounds', rounds;
    return query select node, label from pg_temp.crm360_cc_labels;
    drop table pg_temp.crm360_cc_edges;
    drop table pg_temp.crm360_cc_labels;
end
$fn$;
{%- endmacro %}
