"""Tax IDs and their Stripe `tax_id_type`, per country.

Stripe checks a tax ID's format for its type when it is created and refuses a malformed one, so a
number typed for the wrong type would block the customer from buying. The shapes below follow
Stripe's table of supported types and its examples
(https://docs.stripe.com/billing/customer/tax-ids); Stripe publishes examples, not rules, so these
check the structure (prefix, letters, length) and leave the final word to Stripe and, for EU VAT,
GB VAT and ABNs, the governments' registers it asks.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

EU_VAT_PREFIXES = {
    # Greece uses EL, not GR, in VAT numbers.
    "AT": ("AT", r"U\d{8}"),
    "BE": ("BE", r"[01]\d{9}"),
    "BG": ("BG", r"\d{9,10}"),
    "CY": ("CY", r"\d{8}[A-Z]"),
    "CZ": ("CZ", r"\d{8,10}"),
    "DE": ("DE", r"\d{9}"),
    "DK": ("DK", r"\d{8}"),
    "EE": ("EE", r"\d{9}"),
    "ES": ("ES", r"[A-Z0-9]\d{7}[A-Z0-9]"),
    "FI": ("FI", r"\d{8}"),
    "FR": ("FR", r"[A-HJ-NP-Z0-9]{2}\d{9}"),
    "GR": ("EL", r"\d{9}"),
    "HR": ("HR", r"\d{11}"),
    "HU": ("HU", r"\d{8}(\d{3})?"),
    "IE": ("IE", r"\d[A-Z0-9+*]\d{5}[A-Z]{1,2}"),
    "IT": ("IT", r"\d{11}"),
    "LT": ("LT", r"\d{9}(\d{3})?"),
    "LU": ("LU", r"\d{8}"),
    "LV": ("LV", r"\d{11}"),
    "MT": ("MT", r"\d{8}"),
    "NL": ("NL", r"\d{9}B\d{2}"),
    "PL": ("PL", r"\d{10}"),
    "PT": ("PT", r"\d{9}"),
    "RO": ("RO", r"\d{2,10}"),
    "SE": ("SE", r"\d{12}"),
    "SI": ("SI", r"\d{8}"),
    "SK": ("SK", r"\d{10}"),
}


def _compact(value: str) -> str:
    """Upper case without the spaces, dots, dashes and slashes people type in tax IDs."""
    return re.sub(r"[\s.\-/]", "", value.upper())


def _as_typed(compact: str) -> str:
    return compact


def _ch(suffix: str = "") -> Callable[[str], str]:
    def formatted(compact: str) -> str:
        digits = compact[3:12]
        text = f"CHE-{digits[:3]}.{digits[3:6]}.{digits[6:]}"
        return f"{text} {compact[12:]}" if suffix and compact[12:] else text

    return formatted


def _us_ein(compact: str) -> str:
    return f"{compact[:2]}-{compact[2:]}"


def _br_cnpj(compact: str) -> str:
    return f"{compact[:2]}.{compact[2:5]}.{compact[5:8]}/{compact[8:12]}-{compact[12:]}"


def _br_cpf(compact: str) -> str:
    return f"{compact[:3]}.{compact[3:6]}.{compact[6:9]}-{compact[9:]}"


@dataclass(frozen=True)
class TaxIdRule:
    type: str
    pattern: str  # over the compact form
    example: str
    format: Callable[[str], str] = _as_typed

    def match(self, value: str) -> str | None:
        """The value as Stripe expects it, or None when it does not have this shape."""
        compact = _compact(value)
        if re.fullmatch(self.pattern, compact):
            return self.format(compact)
        return None


def _eu(country: str) -> TaxIdRule:
    prefix, rest = EU_VAT_PREFIXES[country]
    examples = {"GR": "EL123456789", "AT": "ATU12345678", "NL": "NL123456789B01"}
    return TaxIdRule("eu_vat", prefix + rest, examples.get(country, f"{prefix}123456789"))


RULES: dict[str, tuple[TaxIdRule, ...]] = {
    **{country: (_eu(country),) for country in EU_VAT_PREFIXES},
    "ES": (
        _eu("ES"),
        TaxIdRule("es_cif", r"[A-Z]\d{7}[A-Z0-9]", "A12345678"),
    ),
    "GB": (TaxIdRule("gb_vat", r"GB(\d{9}|\d{12}|GD\d{3}|HA\d{3})", "GB123456789"),),
    "CH": (
        TaxIdRule("ch_vat", r"CHE\d{9}(MWST|TVA|IVA)", "CHE-123.456.789 MWST", _ch("vat")),
        TaxIdRule("ch_uid", r"CHE\d{9}", "CHE-123.456.788", _ch()),
    ),
    "LI": (TaxIdRule("li_uid", r"CHE\d{9}", "CHE123456789"),),
    "NO": (
        TaxIdRule("no_vat", r"\d{9}MVA", "123456789MVA"),
        TaxIdRule("no_voec", r"\d{7}", "1234567"),
    ),
    "US": (TaxIdRule("us_ein", r"\d{9}", "12-3456789", _us_ein),),
    "CA": (
        TaxIdRule("ca_gst_hst", r"\d{9}RT\d{4}", "123456789RT0002"),
        TaxIdRule("ca_qst", r"\d{10}TQ\d{4}", "1234567890TQ1234"),
        TaxIdRule("ca_bn", r"\d{9}", "123456789"),
    ),
    "AU": (
        TaxIdRule("au_abn", r"\d{11}", "12345678912"),
        TaxIdRule("au_arn", r"\d{12}", "123456789123"),
    ),
    "NZ": (TaxIdRule("nz_gst", r"\d{8,9}", "123456789"),),
    "IN": (TaxIdRule("in_gst", r"\d{2}[A-Z]{5}\d{4}[A-Z][A-Z0-9]Z[A-Z0-9]", "12ABCDE3456FGZH"),),
    "JP": (
        TaxIdRule("jp_trn", r"T\d{13}", "T1234567891234"),
        TaxIdRule("jp_cn", r"\d{13}", "1234567891234"),
    ),
    "SG": (
        TaxIdRule("sg_gst", r"M\d{8}[A-Z]", "M12345678X"),
        TaxIdRule("sg_uen", r"\d{8,9}[A-Z]|[RST]\d{2}[A-Z]{2}\d{4}[A-Z]", "123456789F"),
    ),
    "AE": (TaxIdRule("ae_trn", r"\d{15}", "123456789012345"),),
    "BR": (
        TaxIdRule("br_cnpj", r"\d{14}", "01.234.456/5432-10", _br_cnpj),
        TaxIdRule("br_cpf", r"\d{11}", "123.456.789-87", _br_cpf),
    ),
    "MX": (TaxIdRule("mx_rfc", r"[A-Z&Ñ]{3,4}\d{6}[A-Z0-9]{3}", "ABC010203AB9"),),
    "ZA": (TaxIdRule("za_vat", r"4\d{9}", "4123456789"),),
}


class TaxIdInvalid(ValueError):
    """The tax ID does not fit any type Stripe accepts for the country; `message` says what
    would."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class TaxId:
    type: str
    value: str


def tax_id_for(*, country: str, value: str) -> TaxId:
    """The Stripe type and the value to send for a tax ID of a customer in `country`."""
    country = (country or "").upper()
    if not country:
        raise TaxIdInvalid("Choose the country first: the tax ID's kind depends on it.")
    rules = RULES.get(country)
    if not rules:
        raise TaxIdInvalid(
            f"Tax IDs from {country} cannot be put on invoices yet; leave the tax ID empty."
        )
    for rule in rules:
        if (matched := rule.match(value)) is not None:
            return TaxId(type=rule.type, value=matched)
    examples = " or ".join(rule.example for rule in rules)
    raise TaxIdInvalid(f"That is not a tax ID from {country}: it looks like {examples}.")


def tax_id_valid(tax_id_type: str, value: str) -> bool:
    """Whether `value` has the shape of `tax_id_type` (in any country using it)."""
    return any(
        rule.match(value) is not None
        for rules in RULES.values()
        for rule in rules
        if rule.type == tax_id_type
    )
