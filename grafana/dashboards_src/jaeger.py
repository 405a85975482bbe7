"""Our own builders for the two Jaeger pieces grafana-foundation-sdk has no type for.

The SDK (built for Grafana 11.6) ships query builders for Prometheus, Tempo, Loki and others but
none for the Jaeger datasource, and its links are dashboard links (title, url, ...) with no field
for a data link's ``internal`` query, which opens a query of another datasource in Explore. Both are
small JSON shapes, so they are written here against the SDK's interfaces (a ``Dataquery`` variant,
a ``DashboardLink`` subclass): the panels take them like any SDK object. Everything else is the SDK.
"""

from __future__ import annotations

from typing import Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as dm

JAEGER_UID = "jaeger"  # fixed by grafana/provisioning/datasources/datasources.yaml
JAEGER = dm.DataSourceRef(type_val="jaeger", uid=JAEGER_UID)
JAEGER_NAME = "Jaeger"
SEARCH_LIMIT = 20


class JaegerQuery(cogvariants.Dataquery):
    """A trace search of Grafana's Jaeger datasource (its ``queryType: search`` model)."""

    def __init__(self, service: str, operation: str, tags: str | None, limit: int, ref_id: str) -> None:
        self.service = service
        self.operation = operation
        self.tags = tags  # logfmt, "key=value key2=value2", as the datasource's search form writes it
        self.limit = limit
        self.ref_id = ref_id

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "datasource": JAEGER,
            "refId": self.ref_id,
            "queryType": "search",
            "service": self.service,
            "operation": self.operation,
            "limit": self.limit,
        }
        if self.tags is not None:
            payload["tags"] = self.tags
        return payload


class JaegerSearch(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, service: str, operation: str) -> None:
        self._query = JaegerQuery(service, operation, tags=None, limit=SEARCH_LIMIT, ref_id="A")

    def tags(self, tags: str) -> Self:
        self._query.tags = tags
        return self

    def build(self) -> cogvariants.Dataquery:
        return self._query


class ExploreDataLink(dm.DashboardLink):
    """A data link that opens a query of another datasource in Explore, inside Grafana."""

    def __init__(self, title: str, datasource_uid: str, datasource_name: str, query: dict[str, object]) -> None:
        super().__init__(title=title, url="")
        self.internal: dict[str, object] = {
            "datasourceUid": datasource_uid,
            "datasourceName": datasource_name,
            "query": query,
        }

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "internal": self.internal}


class JaegerExploreLink(cogbuilder.Builder[dm.DashboardLink]):
    """Data link: a Jaeger search in Explore, for the clicked series' labels."""

    def __init__(self, title: str, service: str, operation: str) -> None:
        self._link = ExploreDataLink(
            title,
            JAEGER_UID,
            JAEGER_NAME,
            {"queryType": "search", "service": service, "operation": operation, "limit": SEARCH_LIMIT},
        )

    def build(self) -> dm.DashboardLink:
        return self._link
