{#- How staging normalises the identifiers that link a customer's records, one macro per
    identifier type (normalize_email is in pyramid.sql, normalize_phone in its own file).
    crm360.privacy renders these same macros to match a deletion request to the stored
    identifiers, so a request and the warehouse can never disagree about what an identifier
    is: change them here, and both follow. -#}

{#- A shop customer id: as the shop wrote it, without surrounding spaces. -#}
{% macro normalize_shop_customer_id(column) -%}
    trim({{ column }})
{%- endmacro %}

{#- A web visitor id: exactly as the web tracker sent it (an opaque, case-sensitive token). -#}
{% macro normalize_visitor_id(column) -%}
    {{ column }}
{%- endmacro %}
