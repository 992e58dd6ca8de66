{#- A phone number in E.164 (+4930123456), or null when it cannot be one.

    Exports hold the same number as "+49 30 1234567", "030 1234567", "0049-30-1234567"
    "+49 (0)30 1234567" or "(030) 123 4567": separators and a bracketed trunk 0 are dropped, an international 00 prefix becomes +,
    and a national trunk 0 is replaced by the calling code of the customer's country
    (Italian numbers keep their 0: Italy has no trunk prefix). Placeholders
    ("0000000000", "+49 000 000000", "n/a", "123456") become null: a number needs
    8 to 15 digits and something other than zeros after its calling code. -#}
{% macro normalize_phone(phone, country_code) -%}
    {%- set calling_codes = {'DE': '49', 'FR': '33', 'NL': '31', 'AT': '43', 'IT': '39', 'PL': '48',
                             'BE': '32', 'CH': '41', 'ES': '34', 'GB': '44', 'US': '1', 'DK': '45',
                             'SE': '46', 'CZ': '420', 'PT': '351'} -%}
    {#- "+49 (0)30 ..." writes the trunk 0 in brackets: it is not part of the international number -#}
    {%- set cleaned = "regexp_replace(replace(coalesce(" ~ phone ~ ", ''), '(0)', ''), '[^0-9+]', '', 'g')" -%}
    {%- set country = "upper(trim(" ~ country_code ~ "))" -%}
    {%- set calling -%}
        case {{ country }}
        {%- for c, code in calling_codes.items() %} when '{{ c }}' then '{{ code }}'{% endfor %}
        end
    {%- endset -%}
    {%- set number -%}
        case
            when {{ cleaned }} ~ '^\+[0-9]+$' then {{ cleaned }}
            when {{ cleaned }} ~ '^00[1-9][0-9]+$' then '+' || substr({{ cleaned }}, 3)
            when {{ cleaned }} ~ '^0[1-9][0-9]+$' then
                '+' || ({{ calling }})
                || case when {{ country }} = 'IT' then {{ cleaned }} else substr({{ cleaned }}, 2) end
        end
    {%- endset -%}
    case
        when ({{ number }}) ~ '^\+[1-9][0-9]{7,14}$'
            and substr(({{ number }}), 2) !~ '^[0-9]{1,3}0+$'
            then ({{ number }})
    end
{%- endmacro %}
