{#- Generic test: each row's period is not empty: valid_from is before valid_to
    (valid_to null means the period is still open). Returns the offending rows. -#}
{% test valid_period(model, valid_from='valid_from', valid_to='valid_to') %}
select {{ valid_from }} as period_from, {{ valid_to }} as period_to, count(*) as occurrences
from {{ model }}
where {{ valid_from }} is null
    or ({{ valid_to }} is not null and {{ valid_from }} >= {{ valid_to }})
group by {{ valid_from }}, {{ valid_to }}
{% endtest %}
