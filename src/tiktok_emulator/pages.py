"""HTML for the consent pages a person (or a browser-driving test) clicks through."""

from __future__ import annotations

from html import escape

from .config import EmulatorAccount, EmulatorAdvertiser

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 34rem; margin: 3rem auto; color: #161823; }
h1 { font-size: 1.4rem; }
fieldset { border: 1px solid #ddd; border-radius: 6px; margin: 1rem 0; }
label { display: block; margin: .3rem 0; }
button { font-size: 1rem; padding: .5rem 1.4rem; margin-right: .6rem; border-radius: 4px; }
#approve { background: #fe2c55; color: white; border: none; }
.note { color: #666; font-size: .85rem; }
"""


def _layout(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}"
        '<p class="note">TikTok emulator: no real TikTok account is involved.</p>'
        "</body></html>"
    )


def _buttons() -> str:
    # No `action`: the form posts back to the page's own URL, query string included, so the
    # authorization request is re-validated from the same parameters on submission.
    return (
        '<button type="submit" id="approve" name="decision" value="approve">Approve</button>'
        '<button type="submit" id="deny" name="decision" value="deny">Deny</button>'
    )


def advertiser_consent(app_id: str, scope: list[int], advertisers: list[EmulatorAdvertiser]) -> str:
    """The TikTok for Business consent page: permissions and ad accounts to grant."""
    permissions = "".join(f"<li>Permission {number}</li>" for number in scope)
    boxes = "".join(
        "<label>"
        f'<input type="checkbox" name="advertiser_id" value="{escape(adv.advertiser_id)}" checked> '
        f"{escape(adv.advertiser_name)} ({escape(adv.advertiser_id)})"
        "</label>"
        for adv in advertisers
    )
    body = (
        f"<p>The app <strong>{escape(app_id)}</strong> asks for these permissions:</p>"
        f'<ul id="permissions">{permissions}</ul>'
        '<form method="post">'
        f"<fieldset><legend>Ad accounts to authorize</legend>{boxes}</fieldset>"
        f"{_buttons()}</form>"
    )
    return _layout("Authorize app", body)


def account_consent(client_key: str, scope: str, accounts: list[EmulatorAccount]) -> str:
    """The TikTok account-holder consent page: scopes and which account to log in with."""
    scopes = "".join(f"<li>{escape(name)}</li>" for name in scope.split(","))
    radios = "".join(
        "<label>"
        f'<input type="radio" name="open_id" value="{escape(account.open_id)}"'
        f"{' checked' if index == 0 else ''}> {escape(account.display_name)}"
        "</label>"
        for index, account in enumerate(accounts)
    )
    body = (
        f"<p>The app <strong>{escape(client_key)}</strong> would like to:</p>"
        f'<ul id="permissions">{scopes}</ul>'
        '<form method="post">'
        f"<fieldset><legend>Continue as</legend>{radios}</fieldset>"
        f"{_buttons()}</form>"
    )
    return _layout("Log in with TikTok", body)


def error_page(message: str) -> str:
    """Shown instead of a redirect when the authorization request itself is invalid."""
    return _layout("Authorization error", f'<p id="error">{escape(message)}</p>')


def cancelled_page() -> str:
    """Shown on denial when the emulator is configured not to redirect."""
    return _layout(
        "Authorization cancelled",
        '<p id="cancelled">You cancelled the authorization. You can close this page.</p>',
    )
