from django import forms


class UsageVisibilityForm(forms.Form):
    members_see_totals = forms.BooleanField(
        required=False,
        label="Members see the organization's totals",
        help_text="Spend, requests and tokens of the whole organization. Members still see only "
        "their own rows, charts by member and CSV.",
    )
