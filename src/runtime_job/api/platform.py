"""Where today's IBM Quantum Platform lives, what every request carries, which instances exist.

The channel ``ibm_quantum_platform`` (and ``ibm_cloud``, now the same) speaks the dialect of
``shared/spec/platform.md``. This module holds the parts of it that are not per job:

- :func:`resolve_endpoints`: the quantum API base, IAM, Global Search and Global Catalog from
  the ``url`` setting, the instance CRN and ``private_endpoint`` (section 1.1);
- :func:`platform_headers`: ``Authorization: Bearer``, ``Service-CRN`` and
  ``IBM-API-Version`` (section 4);
- :func:`discover_instances` and :func:`order_instances`: the API key's instances through
  Global Search (following ``search_cursor``) and each plan through Global Catalog, in the
  preference order of section 3.2.

``url`` is read two ways:

- a **cloud URL**, a bare ``scheme://host`` such as the default ``https://cloud.ibm.com``:
  the services are that cloud's (``{region.}quantum.{host}/api/v1``, ``iam.{host}``,
  ``api.global-search-tagging.{host}``, ``globalcatalog.{host}/api/v1``), the region taken
  from the CRN;
- a **direct URL**, anything with a port, a path, an IP address or ``localhost`` as host,
  a host starting with ``quantum.``, or the word ``experimental``: the quantum API itself
  (``/api/v1`` added when the path is empty), with IAM, Global Search and Global Catalog
  (``/catalog``) on the same origin, as our local server serves them.

``IAM_URL``, ``GLOBAL_SEARCH_URL`` and ``GLOBAL_CATALOG_URL`` in the environment override
those three, as with the official client.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, urlsplit

import requests

from ..exceptions import ApiConnectionError, IBMAccountError, IBMNotAuthorizedError
from .iam import PRIVATE_IAM_URL, STAGING_IAM_URL

logger = logging.getLogger(__name__)

API_VERSION: Final = "2026-04-15"
"""The ``IBM-API-Version`` every quantum API request asks for."""
API_VERSION_HEADER: Final = "IBM-API-Version"
DEFAULT_CLOUD_URL: Final = "https://cloud.ibm.com"
"""The default ``url`` of the platform channels."""
SEARCH_PATH: Final = "/v3/resources/search"
SEARCH_QUERY: Final = "service_name:quantum-computing"
SEARCH_FIELDS: Final = ("crn", "service_plan_unique_id", "name", "doc", "tags")
SEARCH_PAGE: Final = 100
MAX_SEARCH_PAGES: Final = 100
"""Discovery stops after this many pages (10 000 instances), whatever the cursor says."""
PRICING_ORDER: Final = ("free", "trial", "paygo", "paid", "subscription", "unknown")
"""Instances are preferred in this order of their plan's pricing type (section 3.2)."""
DISCOVERY_TIMEOUT: Final = (5.0, 60.0)


# ------------------------------------------------------------------------------ CRNs and URLs


def crn_fields(instance: str | None) -> list[str] | None:
    """The colon-separated fields of a CRN, or ``None`` when ``instance`` is not one."""
    if not isinstance(instance, str) or not instance.startswith("crn:"):
        return None
    fields = instance.split(":")
    return fields if len(fields) >= 6 else None


def crn_region(instance: str | None) -> str | None:
    """The region of a CRN (its 6th field), or ``None``."""
    fields = crn_fields(instance)
    return fields[5] or None if fields else None


def is_direct_url(url: str) -> bool:
    """Whether ``url`` names the quantum API itself rather than a cloud (module docstring)."""
    if "experimental" in url:
        return True
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.port is not None or parts.path.strip("/") or host == "localhost":
        return True
    if host.startswith("quantum.") or ".quantum." in host:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class PlatformEndpoints:
    """The base URLs of the services one platform account uses.

    Attributes:
        api: The quantum API base (``.../api/v1``), or ``""`` when it depends on an instance
            not chosen yet (a cloud URL without a CRN; see :meth:`api_for`).
        iam: IAM's base (``POST {iam}/identity/token``).
        search: Global Search's base (``POST {search}/v3/resources/search``).
        catalog: Global Catalog's base (``GET {catalog}/{plan id}``).
        url: The ``url`` setting they were resolved from.
        private_endpoint: Whether private endpoints were asked for.
    """

    api: str
    iam: str
    search: str
    catalog: str
    url: str = DEFAULT_CLOUD_URL
    private_endpoint: bool = False

    def api_for(self, instance: str | None) -> str:
        """The quantum API base for requests on behalf of ``instance`` (a CRN)."""
        return quantum_api_base(self.url, instance, self.private_endpoint)


def quantum_api_base(url: str | None, instance: str | None, private_endpoint: bool = False) -> str:
    """The quantum API base URL (section 1.1, with our direct-URL rule).

    Args:
        url: The ``url`` setting (default :data:`DEFAULT_CLOUD_URL`).
        instance: The instance CRN, if known.
        private_endpoint: Use IBM Cloud's private network.

    Returns:
        ``{scheme}://{region.}quantum.{host}/api/v1`` for a cloud URL and a CRN (no prefix
        for ``us-east``), ``{scheme}://private.{region}.quantum.{host}/api/v1`` with
        ``private_endpoint``; a direct URL with ``/api/v1`` added to an empty path; ``""``
        for a cloud URL without a CRN.
    """
    url = (url or DEFAULT_CLOUD_URL).rstrip("/")
    if is_direct_url(url):
        parts = urlsplit(url)
        return url if parts.path.strip("/") else url + "/api/v1"
    parts = urlsplit(url)
    scheme, host = parts.scheme or "https", parts.hostname or ""
    region = crn_region(instance)
    if region is None:
        return ""
    if private_endpoint:
        return f"{scheme}://private.{region}.quantum.{host}/api/v1"
    prefix = "" if region == "us-east" else f"{region}."
    return f"{scheme}://{prefix}quantum.{host}/api/v1"


def resolve_endpoints(
    url: str | None = None,
    instance: str | None = None,
    *,
    private_endpoint: bool = False,
    environ: Mapping[str, str] | None = None,
) -> PlatformEndpoints:
    """Every service base URL for one account (module docstring for the rules).

    Args:
        url: The ``url`` setting (default :data:`DEFAULT_CLOUD_URL`).
        instance: The instance CRN, if given.
        private_endpoint: Use IBM Cloud's private network.
        environ: Where ``IAM_URL``, ``GLOBAL_SEARCH_URL`` and ``GLOBAL_CATALOG_URL`` are read
            (default: ``os.environ``).

    Returns:
        The endpoints.
    """
    env = os.environ if environ is None else environ
    url = (url or DEFAULT_CLOUD_URL).rstrip("/")
    parts = urlsplit(url)
    scheme = parts.scheme or "https"
    if is_direct_url(url):
        origin = f"{scheme}://{parts.netloc}"
        iam, search, catalog = origin, origin, origin + "/catalog"
    else:
        host = parts.hostname or ""
        fields = crn_fields(instance)
        if private_endpoint:
            iam = f"{scheme}://private.iam.{host}" if host != "cloud.ibm.com" else PRIVATE_IAM_URL
        elif fields is not None and fields[2] == "staging":
            iam = STAGING_IAM_URL
        else:
            iam = f"{scheme}://iam.{host}"
        search = f"{scheme}://api.global-search-tagging.{host}"
        catalog = f"{scheme}://globalcatalog.{host}/api/v1"
    return PlatformEndpoints(
        api=quantum_api_base(url, instance, private_endpoint),
        iam=(env.get("IAM_URL") or iam).rstrip("/"),
        search=(env.get("GLOBAL_SEARCH_URL") or search).rstrip("/"),
        catalog=(env.get("GLOBAL_CATALOG_URL") or catalog).rstrip("/"),
        url=url,
        private_endpoint=private_endpoint,
    )


def platform_headers(access_token: str, instance: str | None) -> dict[str, str]:
    """The headers of every quantum API request (section 4).

    Args:
        access_token: The IAM access token.
        instance: The instance CRN.

    Returns:
        ``Authorization: Bearer <token>``, ``Service-CRN: <crn>`` and ``IBM-API-Version``.
    """
    return {
        "Authorization": f"Bearer {access_token}",
        "Service-CRN": instance or "",
        API_VERSION_HEADER: API_VERSION,
    }


# ------------------------------------------------------------------------------ discovery


@dataclass(frozen=True)
class PlatformInstance:
    """One instance of the account, as discovery found it.

    Attributes:
        crn: Its CRN (what ``Service-CRN`` carries).
        name: Its name.
        plan: Its plan name, lower-cased (``unknown`` when the catalog failed).
        pricing: Its plan's pricing type, lower-cased (``free``, ``paid``, ...).
        tags: Its tags.
    """

    crn: str
    name: str = ""
    plan: str = "unknown"
    pricing: str = "unknown"
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def region(self) -> str | None:
        """The region of its CRN."""
        return crn_region(self.crn)


def _discovery_error(
    what: str, err: Exception | None = None, status: int | None = None
) -> Exception:
    detail = (
        f" (HTTP {status})" if status is not None else (f" ({type(err).__name__})" if err else "")
    )
    message = (
        f"Unable to retrieve instances from {what}{detail}. Please check that you are using a "
        "valid IBM Cloud API key."
    )
    if status == 401:
        return IBMNotAuthorizedError(message)
    if status is None and err is not None:
        return ApiConnectionError(message)
    return IBMAccountError(message)


def discover_instances(
    endpoints: PlatformEndpoints,
    token: Callable[[], str],
    *,
    session: requests.Session | None = None,
    verify: bool | str = True,
    proxies: Mapping[str, str] | None = None,
    timeout: tuple[float, float] = DISCOVERY_TIMEOUT,
) -> list[PlatformInstance]:
    """The account's quantum instances that have an allocation, with their plans.

    Global Search is asked for every ``quantum-computing`` resource, page by page while it
    returns a ``search_cursor`` (at most :data:`MAX_SEARCH_PAGES` pages; a cursor seen before
    ends the loop). Items without ``doc.extensions`` have no allocation and are skipped.
    Each distinct plan is looked up once in Global Catalog; a catalog failure gives plan and
    pricing ``unknown``, with a warning.

    Args:
        endpoints: Where Global Search and Global Catalog are.
        token: Returns a bearer token for them (an :class:`~.iam.IamTokenManager`'s
            ``token``).
        session: The ``requests`` session (default: a temporary one).
        verify: TLS verification.
        proxies: ``requests`` proxies.
        timeout: ``(connect, read)`` seconds per request.

    Returns:
        The instances, in the order Global Search listed them.

    Raises:
        IBMAccountError: Global Search refused the request (4xx) or answered nonsense.
        IBMNotAuthorizedError: Global Search answered 401.
        ApiConnectionError: Global Search could not be reached.
    """
    own = session is None
    http = session or requests.Session()
    options: dict[str, Any] = {"verify": verify, "timeout": timeout, "proxies": dict(proxies or {})}
    try:
        items = _search(endpoints, token, http, options)
        plans: dict[str, tuple[str, str]] = {}
        found = []
        for item in items:
            plan_id = str(item.get("service_plan_unique_id") or "")
            if plan_id not in plans:
                plans[plan_id] = _catalog_plan(endpoints, token, http, options, plan_id)
            plan, pricing = plans[plan_id]
            tags = item.get("tags") or ()
            found.append(
                PlatformInstance(
                    crn=str(item["crn"]),
                    name=str(item.get("name") or ""),
                    plan=plan,
                    pricing=pricing,
                    tags=tuple(str(tag) for tag in tags) if isinstance(tags, list) else (),
                )
            )
        return found
    finally:
        if own:
            http.close()


def _search(
    endpoints: PlatformEndpoints,
    token: Callable[[], str],
    http: requests.Session,
    options: dict[str, Any],
) -> list[dict[str, Any]]:
    url = endpoints.search + SEARCH_PATH
    body: dict[str, Any] = {"query": SEARCH_QUERY, "fields": list(SEARCH_FIELDS)}
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _ in range(MAX_SEARCH_PAGES):
        headers = {
            "Authorization": f"Bearer {token()}",
            "content-type": "application/json",
            "Accept": "application/json",
        }
        try:
            response = http.post(
                url, params={"limit": SEARCH_PAGE}, json=body, headers=headers, **options
            )
        except requests.RequestException as err:
            raise _discovery_error("Global Search", err) from err
        if not response.ok:
            raise _discovery_error("Global Search", status=response.status_code)
        try:
            page = response.json()
        except ValueError:
            page = None
        if not isinstance(page, dict) or not isinstance(page.get("items", []), list):
            raise _discovery_error("Global Search: the answer is not a search page")
        for item in page.get("items") or []:
            if not isinstance(item, dict) or not isinstance(item.get("crn"), str):
                continue
            doc = item.get("doc")
            if isinstance(doc, dict) and doc.get("extensions"):
                items.append(item)
        cursor = page.get("search_cursor")
        if not isinstance(cursor, str) or not cursor or cursor in seen:
            break
        seen.add(cursor)
        body = {**body, "search_cursor": cursor}
    return items


def _catalog_plan(
    endpoints: PlatformEndpoints,
    token: Callable[[], str],
    http: requests.Session,
    options: dict[str, Any],
    plan_id: str,
) -> tuple[str, str]:
    """``(plan name, pricing type)``, lower-cased; ``("unknown", "unknown")`` on failure."""
    if not plan_id:
        return "unknown", "unknown"
    url = f"{endpoints.catalog}/{quote(plan_id, safe='')}"
    try:
        response = http.get(
            url,
            headers={"Authorization": f"Bearer {token()}", "Accept": "application/json"},
            **options,
        )
        entry = response.json() if response.ok else None
        name = entry["overview_ui"]["en"]["display_name"] if isinstance(entry, dict) else None
        pricing = entry["metadata"]["pricing"]["type"] if isinstance(entry, dict) else None
        if isinstance(name, str) and isinstance(pricing, str):
            return name.lower(), pricing.lower()
        failure = f"HTTP {response.status_code}" if not response.ok else "no plan name or pricing"
    except (requests.RequestException, ValueError, KeyError, TypeError) as err:
        failure = type(err).__name__
    logger.warning(
        "Could not read the plan %s from Global Catalog (%s): plan unknown", plan_id, failure
    )
    return "unknown", "unknown"


def order_instances(
    instances: Iterable[PlatformInstance],
    *,
    plans_preference: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    region: str | None = None,
) -> list[PlatformInstance]:
    """Filter and order instances the way backends are looked up in them (section 3.2).

    Args:
        instances: The discovered instances.
        plans_preference: Plan names to keep, in the order to try them (case-insensitive);
            default: every plan, ordered by pricing type (:data:`PRICING_ORDER`).
        tags: Keep only instances carrying all of these tags.
        region: Keep only instances of this region.

    Returns:
        The instances to try, preferred first (ties keep the discovery order).
    """
    kept = [
        instance
        for instance in instances
        if (not tags or set(tags) <= set(instance.tags))
        and (region is None or instance.region == region)
    ]
    if plans_preference:
        wanted = [plan.lower() for plan in plans_preference]
        kept = [instance for instance in kept if instance.plan in wanted]
        return sorted(kept, key=lambda instance: wanted.index(instance.plan))

    def rank(instance: PlatformInstance) -> int:
        pricing = instance.pricing if instance.pricing in PRICING_ORDER else "unknown"
        return PRICING_ORDER.index(pricing)

    return sorted(kept, key=rank)


__all__ = [
    "API_VERSION",
    "API_VERSION_HEADER",
    "DEFAULT_CLOUD_URL",
    "PRICING_ORDER",
    "PlatformEndpoints",
    "PlatformInstance",
    "crn_fields",
    "crn_region",
    "discover_instances",
    "is_direct_url",
    "order_instances",
    "platform_headers",
    "quantum_api_base",
    "resolve_endpoints",
]
