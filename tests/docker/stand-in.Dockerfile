# Stand-ins for postgres:16-alpine, redis:7-alpine, minio/minio and minio/mc where no registry
# can be reached: Debian's PostgreSQL and Redis, and moto's S3 server with an `mc` of boto3
# (mc_stand_in.py), on the bootstrapped base image, behaving as the compose file expects of the
# official images (POSTGRES_* settings, `redis-server` and `server` arguments, pg_isready,
# redis-cli, `mc ready` and the init container's `mc` commands).
# PostgreSQL's own programs, not Debian's cluster wrappers, and no cluster of Debian's making.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        postgresql redis-server \
    && rm -rf /var/lib/apt/lists/* /etc/postgresql /var/lib/postgresql/* \
    && ln -s /usr/lib/postgresql/*/bin/* /usr/local/bin/
# pyproject.toml's pins (tests/docker/images.py passes them).
ARG MOTO_REQUIREMENT
ARG BOTO3_REQUIREMENT
RUN python3 -m venv /opt/s3 \
    && PIP_NO_CACHE_DIR=1 /opt/s3/bin/pip install --quiet --disable-pip-version-check \
        "$MOTO_REQUIREMENT" "$BOTO3_REQUIREMENT"
COPY mc_stand_in.py /opt/s3/mc.py
RUN printf '#!/bin/sh\nexec /opt/s3/bin/python /opt/s3/mc.py "$@"\n' > /usr/local/bin/mc \
    && chmod 755 /usr/local/bin/mc
COPY stand-in-entrypoint.sh /usr/local/bin/stand-in
WORKDIR /data
ENTRYPOINT ["/usr/local/bin/stand-in"]
CMD ["postgres"]
