{#- The RFM segment of a customer from its three 1-5 scores. Rules are checked in
    order; the first that matches names the segment. -#}
{% macro rfm_segment(recency, frequency, monetary) -%}
    case
        when {{ recency }} >= 4 and {{ frequency }} >= 4 and {{ monetary }} >= 4 then 'champions'
        when {{ recency }} >= 3 and {{ frequency }} >= 4 then 'loyal'
        when {{ recency }} >= 4 and {{ frequency }} <= 2 then 'new_or_promising'
        when {{ recency }} <= 2 and {{ frequency }} >= 4 then 'cannot_lose'
        when {{ recency }} <= 2 and {{ frequency }} >= 3 then 'at_risk'
        when {{ recency }} <= 2 then 'hibernating'
        else 'needs_attention'
    end
{%- endmacro %}

{#- The segments rfm_segment() can give, for accepted_values tests. -#}
{% macro rfm_segment_names() -%}
    {{ return(['champions', 'loyal', 'new_or_promising', 'cannot_lose', 'at_risk', 'hibernating', 'needs_attention']) }}
{%- endmacro %}
