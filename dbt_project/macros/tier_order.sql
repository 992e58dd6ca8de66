{#- Tier order within each pyramid, 1 = top.

    activity: active 1, inactive 2, prospect 3, suspect 4;
    revenue: the tiers of var('revenue_tiers') in the order listed (top first), then 'none'.
    `pyramid` and `tier` are SQL expressions (a column, or a quoted literal). An
    unknown tier gives null, so it can never be counted as a move up or down. -#}
{% macro tier_rank(pyramid, tier) -%}
    case {{ pyramid }}
        when 'activity' then {{ activity_tier_rank(tier) }}
        when 'revenue' then {{ revenue_tier_rank(tier) }}
    end
{%- endmacro %}

{% macro activity_tier_rank(tier) -%}
    case {{ tier }} when 'active' then 1 when 'inactive' then 2 when 'prospect' then 3 when 'suspect' then 4 end
{%- endmacro %}

{% macro revenue_tier_rank(tier) -%}
    {%- set tiers = var('revenue_tiers') -%}
    case {{ tier }}
    {%- for t in tiers %} when '{{ t["tier"] }}' then {{ loop.index }}{% endfor %} when 'none' then {{ tiers | length + 1 }}
    end
{%- endmacro %}

{#- How a customer moved between two snapshots in one pyramid: 'entered' (not in
    the earlier snapshot: from_tier is null), 'up' (to a tier nearer the top),
    'down', or 'same'. -#}
{% macro tier_movement(pyramid, from_tier, to_tier) -%}
    case
        when {{ from_tier }} is null then 'entered'
        when {{ tier_rank(pyramid, to_tier) }} < {{ tier_rank(pyramid, from_tier) }} then 'up'
        when {{ tier_rank(pyramid, to_tier) }} > {{ tier_rank(pyramid, from_tier) }} then 'down'
        else 'same'
    end
{%- endmacro %}
