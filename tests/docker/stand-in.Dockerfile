# Stand-ins for postgres:16-alpine and redis:7-alpine where no registry can be reached: Debian's
# PostgreSQL and Redis on the bootstrapped base image, behaving as the compose file expects of
# the official images (POSTGRES_* settings, `redis-server` arguments, pg_isready, redis-cli).
# PostgreSQL's own programs, not Debian's cluster wrappers, and no cluster of Debian's making.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        postgresql redis-server \
    && rm -rf /var/lib/apt/lists/* /etc/postgresql /var/lib/postgresql/* \
    && ln -s /usr/lib/postgresql/*/bin/* /usr/local/bin/
COPY stand-in-entrypoint.sh /usr/local/bin/stand-in
WORKDIR /data
ENTRYPOINT ["/usr/local/bin/stand-in"]
CMD ["postgres"]
