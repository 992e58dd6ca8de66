{#- What a build may read of raw, and what an incremental model must read again.

    A source's raw rows come from load attempts (crm360/ingest/ledger.py, audit.load_attempts). A
    build reads only rows of attempts that passed their raw gate, and only those loaded before
    the source's *horizon*: the load time of its oldest attempt still loading or waiting for
    its gate (or now). crm360 fixes the horizons once per build (env CRM360_LOAD_HORIZONS, a
    JSON object by source); a bare `dbt build` computes them as it goes. An attempt not yet
    gated is newer than the horizon, so when it is gated the next build picks it up.

    An incremental model reads the gated rows loaded since its last build (its watermark, the
    newest loaded_at it holds). When a gated attempt in that window replaced a file loaded
    before, or put back files an unloaded attempt had replaced, rows the model built from the
    earlier version may be stale: the model is rebuilt from all of its input instead (its
    pre-hook, clear_for_rebuild, empties it first). A day that brings only new files stays
    incremental. -#}

{#- The horizon of a source, as a SQL expression. The env var is read only when the SQL is built
    for running (`execute`): read while dbt parses, it would be recorded as an input of every
    model calling this, and since each build's horizons differ, partial parsing would parse those
    models again on every run. -#}
{% macro load_horizon(source_name) -%}
    {%- set given = env_var('CRM360_LOAD_HORIZONS', '') if execute else '' -%}
    {%- if given -%}
        '{{ fromjson(given)[source_name] }}'::timestamptz
    {%- else -%}
        (select least(now(), min(a.loaded_at)) from audit.load_attempts as a
         where a.source = '{{ source_name }}' and a.status in ('loading', 'loaded', 'failed'))
    {%- endif -%}
{%- endmacro %}

{#- A predicate on a raw table of a source: its rows that passed their gate and lie below the
    horizon. In a dbt unit test (the relation is a fixture CTE) every row given is the input. -#}
{% macro gated(source_name, relation) -%}
    {%- if '__dbt__cte__' in (relation | string) -%}
        true
    {%- else -%}
        _loaded_at < {{ load_horizon(source_name) }}
        and _batch_id in (select a.batch_id from audit.load_attempts as a
                          where a.source = '{{ source_name }}' and a.status = 'gated')
    {%- endif -%}
{%- endmacro %}

{#- 'delta' when this incremental model can add the rows loaded since its last build; 'rebuild'
    when it must be computed from all of its input (a first build, a full refresh, or a gated
    attempt since its last build that replaced or put back files of the source). `built`: the
    table whose newest `this_column` marks the last build, if not the model's own. -#}
{% macro build_mode(source_name, this_column='loaded_at', built=none) -%}
    {%- if not is_incremental() -%}
        {{ return('rebuild') }}
    {%- endif -%}
    {%- if '__dbt__cte__' in (this | string) or not execute -%}
        {{ return('delta') }}
    {%- endif -%}
    {%- set query -%}
        select exists (
            select 1 from audit.load_attempts as a
            where a.source = '{{ source_name }}' and a.status = 'gated' and a.replaced_files > 0
              and a.loaded_at > coalesce((select max(built.{{ this_column }}) from {{ built or this }} as built),
                                         '-infinity'::timestamptz)
              and a.loaded_at < {{ load_horizon(source_name) }})
    {%- endset -%}
    {{ return('rebuild' if run_query(query).columns[0].values()[0] else 'delta') }}
{%- endmacro %}

{#- A pre-hook of an incremental model: empty it when it is rebuilt from all of its input. -#}
{% macro clear_for_rebuild(source_name, this_column='loaded_at') -%}
    {%- if is_incremental() and build_mode(source_name, this_column) == 'rebuild' -%}
        delete from {{ this }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- A predicate on a source's load timestamp: true on a full build or a rebuild (see build_mode,
    given the source), else only rows loaded after the newest `loaded_at` in this model. -#}
{% macro loaded_since_last_build(loaded_at_column, this_column='loaded_at', source_name=none) -%}
    {%- if is_incremental() and (source_name is none or build_mode(source_name, this_column) == 'delta') -%}
        {#- the watermark is read first and written into the query as a literal: with a
            subquery the planner cannot know the range is small and scans the history -#}
        {%- if '__dbt__cte__' in (this | string) -%}
            {#- a dbt unit test: `this` is a fixture CTE, not a table to query now -#}
            {{ loaded_at_column }} > (select coalesce(max(built.{{ this_column }}), '-infinity'::timestamptz) from {{ this }} as built)
        {%- else -%}
            {%- set watermark = none -%}
            {%- if execute -%}
                {%- set found = run_query("select max(" ~ this_column ~ ")::text from " ~ this) -%}
                {%- set watermark = found.columns[0].values()[0] -%}
            {%- endif -%}
            {{ loaded_at_column }} > '{{ watermark if watermark is not none else "-infinity" }}'::timestamptz
        {%- endif -%}
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- A post-hook creating an index on this model if it does not exist yet. An
    incremental model's loaded_at needs a btree: max(loaded_at), its watermark, is
    an index lookup there and a full scan with BRIN.

    Names longer than PostgreSQL's 63 characters end in a hash of the full name
    instead of being cut (two cut names could collide). A table rebuilt in place
    (a bare `dbt build` run twice) still has its predecessor, renamed to a backup
    that dbt drops after this hook, holding the index name in the schema: that
    index is dropped first, else the new table would silently get none. -#}
{% macro ensure_index(columns, using='btree') -%}
    {%- set name = this.identifier ~ '__' ~ (columns | join('_')) ~ '__' ~ using ~ '_idx' -%}
    {%- if name | length > 63 -%}
        {%- set name = name[:54] ~ '_' ~ local_md5(name)[:8] -%}
    {%- endif -%}
    {%- if config.get('materialized') == 'table' -%}
    do $ensure_index$ begin
        if exists (select from pg_indexes where schemaname = '{{ this.schema }}' and indexname = '{{ name }}'
                   and tablename <> '{{ this.identifier }}') then
            drop index "{{ this.schema }}"."{{ name }}";
        end if;
    end $ensure_index$;
    {% endif -%}
    create index if not exists "{{ name }}" on {{ this }} using {{ using }} ({{ columns | join(', ') }})
{%- endmacro %}

{#- A post-hook: ANALYZE the model's table (views have no statistics of their own). An
    incremental table whose statistics still describe it is left alone: it has statistics and
    has grown by less than a tenth (in pages) since they were taken, as on most days; analyzing
    it would sample a large table again every run for a few new rows (autovacuum's threshold
    is the same tenth, counted over the days). A rebuild doubles its pages, and is analyzed. -#}
{% macro analyze_table() -%}
    {%- if config.get('materialized') == 'table' -%}
        analyze {{ this }}
    {%- elif config.get('materialized') == 'incremental' -%}
    do $analyze_table$ begin
        if not exists (select from pg_stats where schemaname = '{{ this.schema }}' and tablename = '{{ this.identifier }}')
           or (select c.relpages = 0 or pg_relation_size(c.oid) / current_setting('block_size')::bigint > c.relpages * 1.1
               from pg_class as c where c.oid = '{{ this }}'::regclass) then
            analyze {{ this }};
        end if;
    end $analyze_table$
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
