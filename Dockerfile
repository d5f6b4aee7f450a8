# The hub as a service: `hub serve` on port 8700. Configuration comes from config/ (mount your own
# over /app/config) and the environment (HUB_DATABASE_URL for PostgreSQL). Keys and partners'
# certificates are mounted at HUB_PKI_DIR (/var/lib/hub/pki): the hub never makes one, and stops naming
# the missing file. Development keys, to try the image: `hub dev init` in the same volume first.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HUB_HOME=/app HUB_VAR_DIR=/var/lib/hub
WORKDIR /app

# Printing the documents for citizens (registry/printing/): Pango lays the PDFs out, with the fonts they name
# (Amiri for Arabic, under the SIL Open Font License).
RUN apt-get update && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 fontconfig \
        fonts-hosny-amiri fonts-liberation fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md ./
COPY hub ./hub
COPY connectors ./connectors
COPY registry ./registry
COPY sandbox ./sandbox
COPY demo ./demo
RUN pip install --no-cache-dir -e . && useradd --system --home /var/lib/hub hub && mkdir -p /var/lib/hub \
    && chown hub /var/lib/hub
COPY schemas ./schemas
COPY mappings ./mappings
COPY config ./config

USER hub
EXPOSE 8700
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8700/healthz')"
CMD ["hub", "serve", "--host", "0.0.0.0", "--port", "8700", "--processes", "2", "--delivery-processes", "2"]
