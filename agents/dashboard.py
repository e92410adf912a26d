"""OCF agent for the OpenStack dashboard (horizon), run under uWSGI by the agent, not by apache.

Debian's ``openstack-dashboard`` serves horizon's WSGI application
(``/usr/share/openstack-dashboard/wsgi.py``) with its settings in
``/etc/openstack-dashboard/local_settings.py``, a Python file that horizon
imports as ``local.local_settings``.  The agent runs that application under
uWSGI as user ``horizon`` (which the package creates), so that the process is
ours: known by pid and start time, stopped as a whole, checked by depth.

* 0: the process and its listening socket (the daemon base);
* 10: the login page (``version_path``, ``/auth/login/`` under horizon's
  WEBROOT) answers 200 with the login form;
* 20: a real login through keystone with the credentials file's user: the
  login page for its CSRF token and cookie, the form posted back, and the
  redirect to a logged-in page expected, then a logout (no session left
  behind in horizon's session store).  The dashboard answering with the
  form again (keystone refused or failed the login), or keystone not
  answering at ``auth_url``, is degraded (190), not a failure.
"""

from __future__ import annotations

import os

from agents.ocf.codes import OCF, OCFError
from agents.service import ApiService, ConfigBroken, Degraded

TYPE_CHECKING = False
if TYPE_CHECKING:
    import configparser
    from collections.abc import Iterable

    from agents.http import Response
    from agents.ocf.deadline import Deadline

STATIC_ROOT = "/var/lib/openstack-dashboard/static"  # Debian's STATIC_ROOT, served at /static/
SETTINGS_PACKAGE = "settings/local"  # in the state directory: horizon's ``local`` package, ours
MESSAGE_MAX = 120


class Dashboard(ApiService):
    name = "dashboard"
    shortdesc = "OpenStack dashboard (horizon)"
    longdesc = ("Runs horizon's WSGI application under uWSGI as user horizon, checks it by depth (0: "
                "process and listening socket, 10: the login page, 20: a login through keystone), and "
                "reports a keystone outage as degraded rather than as a failure.")
    service = "horizon"
    default_user = "horizon"
    default_config = "/etc/openstack-dashboard/local_settings.py"
    default_port = 8080  # uWSGI runs as horizon: not a privileged port
    default_launcher = "uwsgi"
    launchers = {"uwsgi": "/usr/share/openstack-dashboard/wsgi.py"}
    version_path = "/auth/login/"
    database_options = ()

    # The settings are Python: the WSGI file is read, not run --------------------

    def programs(self) -> list[str]:
        return [self.config.text("uwsgi_binary")] if self.launcher == "uwsgi" else super().programs()

    def validate(self) -> Iterable[OCFError]:
        problems = list(super().validate())
        wsgi_file = self.binary
        if self.launcher == "uwsgi" and wsgi_file and not os.path.isfile(wsgi_file):
            problems.append(OCFError(OCF.ERR_INSTALLED, f"{wsgi_file} is not installed"))
        return problems

    def service_options(self) -> configparser.ConfigParser:
        """None of the ini options the base reads; a settings file that does not compile is broken
        (where, never what: a line may hold a secret)."""
        import configparser

        config = self.config.text("config")
        try:
            with open(config, "rb") as handle:
                compile(handle.read(), config, "exec", dont_inherit=True)
        except SyntaxError as exc:
            raise ConfigBroken(f"cannot parse {config} at line {exc.lineno} ({type(exc).__name__})") from None
        except ValueError:
            raise ConfigBroken(f"cannot parse {config} (it holds a null byte)") from None
        except OSError as exc:
            raise ConfigBroken(f"cannot read {config}: {exc.strerror}") from None
        return configparser.ConfigParser()

    def entry_point_env(self) -> dict[str, str]:
        """horizon imports ``local.local_settings`` (Debian links the package's one to /etc): a
        package ``local`` of ours, first on the path, links to ``config`` instead."""
        package = self.state.file(SETTINGS_PACKAGE)
        os.makedirs(package, exist_ok=True)
        os.chmod(self.state.path, 0o711)  # noqa: S103 - the service user reaches the package only
        for directory in (os.path.dirname(package), package):
            os.chmod(directory, 0o755)  # noqa: S103 - readable by the service user, written by root
        init = os.path.join(package, "__init__.py")
        if not os.path.isfile(init):
            fd = os.open(init, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
            try:
                os.fchmod(fd, 0o644)  # on the descriptor: the umask may have narrowed it
            finally:
                os.close(fd)
        link = os.path.join(package, "local_settings.py")
        if os.path.lexists(link + ".new"):
            os.unlink(link + ".new")
        os.symlink(self.config.text("config"), link + ".new")
        os.replace(link + ".new", link)
        return {"PYTHONPATH": os.path.dirname(package)}

    def command_line(self) -> list[str]:
        argv = super().command_line()
        if self.launcher == "uwsgi":
            argv += ["--static-map", f"/static={STATIC_ROOT}"]
        return argv

    # Depth 10: the login page ---------------------------------------------------------

    def check_version(self) -> None:
        path = self.config.text("version_path")
        page = self.ask(path, {}, self.deadline)
        if page.status != 200:
            raise OCFError(OCF.ERR_GENERIC, f"GET {path} answered {page.status}")
        if LoginPage.read(page.body).form is None:
            raise OCFError(OCF.ERR_GENERIC, f"GET {path} answered 200 without a login form")

    # Depth 20: a login through keystone ------------------------------------------------

    def real_work(self, deadline: Deadline) -> None:
        from urllib.parse import urlencode

        credentials = self.credentials()
        path = self.config.text("version_path")
        page = self.ask(path, {}, deadline)
        form = LoginPage.read(page.body).form if page.status == 200 else None
        if form is None:
            raise OCFError(OCF.ERR_GENERIC, f"GET {path} answered {page.status} without a login form")
        action, fields = form
        fields.update(username=credentials["username"], password=credentials["password"])
        if "domain" in fields:
            fields["domain"] = credentials.get("user_domain_name", "Default")
        target = action if action.startswith("/") else path
        answer = self.post(target, urlencode(fields).encode("ascii"), page, deadline)
        where = answer.headers.get("location", "")
        if answer.status in (302, 303) and where and "/auth/" not in where:
            self.logout(path, page, answer, deadline)
            return
        if answer.status == 200 and LoginPage.read(answer.body).form is not None:
            # The dashboard works; keystone refused or failed the login.
            message = LoginPage.read(answer.body).message or "no message"
            raise Degraded(f"the dashboard's login through keystone failed: {message}")
        raise OCFError(OCF.ERR_GENERIC, f"POST {target} answered {answer.status}"
                       + (f" to {where}" if where else ""))

    def logout(self, login_path: str, page: Response, answer: Response, deadline: Deadline) -> None:
        """GET horizon's logout URL (``auth/logout/`` beside the login page) with the logged-in
        session's cookies, as horizon's own logout link does: a server-side session store (horizon's
        default, a cache) keeps no session of every deep monitor.  The login worked: a logout that
        fails is logged, not reported."""
        from agents.http import Unreachable, request
        from agents.ocf.codes import DeadlineExceeded

        path = login_path.rstrip("/").rsplit("/", 1)[0] + "/logout/"
        cookies = {cookie.split("=", 1)[0]: cookie for cookie in (*page.cookies, *answer.cookies)}
        headers = {"Cookie": "; ".join(cookies.values())}
        try:
            done = request(deadline, self.host, self.port, path, headers=headers)
        except (Unreachable, DeadlineExceeded) as exc:
            self.log.warning(f"logout after the deep check's login: GET {path}: {exc.reason}")
            return
        if done.status not in (302, 303):
            self.log.warning(f"logout after the deep check's login: GET {path} answered {done.status}")

    def post(self, path: str, body: bytes, page: Response, deadline: Deadline) -> Response:
        from agents.http import Unreachable, client_address, request

        headers = {"Cookie": "; ".join(page.cookies),
                   "Referer": f"http://{client_address(self.host)}:{self.port}{path}"}
        try:
            return request(deadline, self.host, self.port, path, method="POST", body=body, headers=headers,
                           content_type="application/x-www-form-urlencoded")
        except Unreachable as exc:
            raise OCFError(OCF.ERR_GENERIC, f"POST {path}: {exc.reason}") from None

    def dependency_reserve(self) -> float:
        from agents.service import DEPENDENCY_RESERVE_S, DEPENDENCY_SHARE_MAX

        return min(DEPENDENCY_RESERVE_S, self.deadline.remaining() * DEPENDENCY_SHARE_MAX)

    def dependency_problems(self) -> list[str]:
        """keystone at the credentials' auth_url answers its version document."""
        from urllib.parse import urlsplit

        from agents.http import Unreachable, request
        from agents.ocf.codes import DeadlineExceeded
        from agents.service import DEFAULT_PORTS, DEPENDENCY_CAP_S, HEALTHY_VERSION_STATUS

        try:
            auth_url = self.credentials()["auth_url"]
            url = urlsplit(auth_url)
            port = url.port or DEFAULT_PORTS[url.scheme]
        except OCFError as exc:
            return [exc.reason]
        except (ValueError, KeyError):
            return ["auth_url of the credentials is not an http:// or https:// URL"]
        try:
            answer = request(self.deadline, url.hostname or "", port, url.path or "/",
                             tls=url.scheme == "https", cap=min(DEPENDENCY_CAP_S, self.deadline.remaining()))
        except (Unreachable, DeadlineExceeded) as exc:
            return [f"keystone at {auth_url}: {exc.reason}"]
        if answer.status not in HEALTHY_VERSION_STATUS:
            return [f"keystone at {auth_url} answered {answer.status}"]
        return []


class LoginPage:
    """horizon's login page: its POST form with a password field, and the form's error message."""

    def __init__(self) -> None:
        self.form: tuple[str, dict[str, str]] | None = None
        self.message = ""

    @classmethod
    def read(cls, body: bytes) -> LoginPage:
        from html.parser import HTMLParser

        page = cls()
        action: list[str] = []
        fields: dict[str, str] = {}
        alert: list[str] = []
        depth = [0]  # open <div>s inside the error message

        class Parser(HTMLParser):
            def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
                values = {name: value or "" for name, value in attrs}
                if tag == "form" and values.get("method", "").lower() == "post" and page.form is None:
                    action[:] = [values.get("action", "")]
                    fields.clear()
                elif tag in ("input", "select") and action and values.get("name"):
                    fields.setdefault(values["name"], values.get("value", ""))
                elif tag == "option" and action and fields and not list(fields.values())[-1]:
                    fields[list(fields)[-1]] = values.get("value", "")  # a select's first choice
                if tag == "div" and (depth[0] or (action and "alert-danger" in values.get("class", ""))):
                    depth[0] += 1

            def handle_endtag(self, tag: str) -> None:
                if tag == "form" and action and page.form is None and "password" in fields:
                    page.form = (action[0], dict(fields))
                if tag == "form":
                    action.clear()
                if tag == "div" and depth[0]:
                    depth[0] -= 1

            def handle_data(self, data: str) -> None:
                if depth[0]:
                    alert.append(data)

        parser = Parser(convert_charrefs=True)
        parser.feed(body.decode("utf-8", "replace"))
        parser.close()
        text = " ".join(" ".join(alert).split())
        page.message = "".join(ch for ch in text if ch.isprintable())[:MESSAGE_MAX]
        return page


AGENT = Dashboard

if __name__ == "__main__":
    AGENT.main()
