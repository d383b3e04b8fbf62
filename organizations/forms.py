from django import forms

from organizations.roles import Role


class OrganizationForm(forms.Form):
    name = forms.CharField(max_length=100, strip=True)


class InviteForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)

    def __init__(self, *args: object, roles: list[Role], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["role"].choices = [(r.value, r.label) for r in roles]  # type: ignore[attr-defined]


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)
