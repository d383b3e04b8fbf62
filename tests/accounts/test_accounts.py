import re

from django.core import mail
from django.urls import reverse

from accounts.models import User
from tests.conftest import World, client_for
from tests.factories import PASSWORD, UserFactory


def test_it_signs_up_with_email_as_the_login(db: None) -> None:
    client = client_for(None)
    response = client.post(
        reverse("signup"),
        {
            "email": "New@Example.com",
            "name": "New",
            "password1": "horse-staple-91x",
            "password2": "horse-staple-91x",
        },
    )
    assert response.status_code == 302
    user = User.objects.get(email="new@example.com")
    assert user.check_password("horse-staple-91x")
    assert client.get(reverse("personal_profile")).status_code == 200


def test_it_refuses_weak_passwords_and_taken_emails(world: World) -> None:
    response = client_for(None).post(
        reverse("signup"), {"email": "x@example.com", "password1": "123", "password2": "123"}
    )
    assert "too short" in response.content.decode()
    response = client_for(None).post(
        reverse("signup"),
        {
            "email": world.owner.email,
            "password1": "horse-staple-91x",
            "password2": "horse-staple-91x",
        },
    )
    assert "exists" in response.content.decode()
    assert User.objects.filter(email=world.owner.email).count() == 1
    assert not User.objects.filter(email="x@example.com").exists()


def test_it_logs_in_and_out(db: None) -> None:
    user = UserFactory(email="in@example.com")
    client = client_for(None)
    response = client.post(reverse("login"), {"username": "in@example.com", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get(reverse("personal_profile")).status_code == 200
    client.post(reverse("logout"))
    assert client.get(reverse("personal_profile")).status_code == 302
    assert user.pk


def test_it_rate_limits_failed_logins(db: None, settings) -> None:  # type: ignore[no-untyped-def]
    settings.LOGIN_ATTEMPTS_LIMIT = 3
    UserFactory(email="target@example.com")
    client = client_for(None)
    for _ in range(3):
        client.post(reverse("login"), {"username": "target@example.com", "password": "wrong"})
    # Even the right password is refused while throttled.
    response = client.post(
        reverse("login"), {"username": "target@example.com", "password": PASSWORD}
    )
    assert response.status_code == 200
    assert "Too many failed log-in attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_it_changes_the_password(db: None) -> None:
    user = UserFactory()
    client = client_for(user)
    response = client.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "fresh-pass-word-7",
            "new_password2": "fresh-pass-word-7",
        },
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("fresh-pass-word-7")


def test_it_resets_the_password_by_email(db: None) -> None:
    user = UserFactory(email="forgot@example.com")
    client_for(None).post(reverse("password_reset"), {"email": "forgot@example.com"})
    assert len(mail.outbox) == 1
    link = re.search(r"https?://[^/]+(/accounts/password/reset/\S+)", mail.outbox[0].body)
    assert link
    client = client_for(None)
    form_url = client.get(link.group(1))["Location"]
    response = client.post(
        form_url, {"new_password1": "brand-new-pass-3", "new_password2": "brand-new-pass-3"}
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("brand-new-pass-3")
