# Patroni 3 + PostgreSQL 15 from Debian bookworm's packages, as deploy/local runs them on a host.
FROM postgres:15-bookworm
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends patroni python3-etcd curl \
 && rm -rf /var/lib/apt/lists/*
COPY patroni.yml /etc/patroni/patroni.yml
COPY post-bootstrap.sh /etc/patroni/post-bootstrap.sh
RUN chmod 0755 /etc/patroni/post-bootstrap.sh && mkdir -p /data && chown postgres:postgres /data && chmod 0700 /data
USER postgres
# Patroni's REST API: HAProxy checks GET /primary here.
EXPOSE 5432 8008
HEALTHCHECK --interval=5s --timeout=3s --retries=5 CMD ["curl", "-fsS", "http://127.0.0.1:8008/health"]
ENTRYPOINT ["/usr/bin/patroni", "/etc/patroni/patroni.yml"]
