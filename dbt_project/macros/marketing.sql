{#- Contact fields for marketing: as they are for a customer who gave marketing
    consent, masked otherwise (enough to recognise a record, not to contact it). -#}
{% macro mask_unless_consented(column, kind, consent='has_marketing_consent') -%}
    case
        when {{ consent }} then {{ column }}
        when {{ column }} is null then null
        {%- if kind == 'email' %}
        else left({{ column }}, 1) || '***' || substring({{ column }} from position('@' in {{ column }}))
        {%- elif kind == 'phone' %}
        else '***' || right({{ column }}, 2)
        {%- elif kind == 'name' %}
        else regexp_replace({{ column }}, '(\w)\w*', '\1.', 'g')
        {%- else %}
        {{ exceptions.raise_compiler_error("mask_unless_consented: unknown kind " ~ kind) }}
        {%- endif %}
    end
{%- endmacro %}

{#- One view per segment, `segment__<name>`, beside segment_members: what a tool
    reads to get one list. Built in the same schema as the table, so the views are
    published with it. -#}
{% macro create_segment_views() %}
    {%- for s in var('segments') %}
        create or replace view {{ this.schema }}.segment__{{ s.name }} as
            select * from {{ this }} where segment_name = '{{ s.name }}';
        comment on view {{ this.schema }}.segment__{{ s.name }} is '{{ s.description | replace("'", "''") }}';
        {%- for role in var('segment_reader_roles') %}
        grant select on {{ this.schema }}.segment__{{ s.name }} to {{ adapter.quote(role) }};
        {%- endfor %}
    {%- endfor %}
{% endmacro %}
