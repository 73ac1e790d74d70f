# visionserve, CPU image: docker build -t visionserve:latest . && docker run -p 9001:9001 -v ~/.cache/visionserve:/data visionserve:latest
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VISIONSERVE_HOST=0.0.0.0 \
    VISIONSERVE_PORT=9001 \
    VISIONSERVE_HOME=/data

WORKDIR /src
COPY pyproject.toml README.md ./
COPY visionserve ./visionserve
RUN pip install . \
    && pip install --no-deps trackers==2.6.1 \
    && rm -rf /src \
    && useradd --create-home --uid 10001 visionserve \
    && mkdir -p /data \
    && chown visionserve /data

WORKDIR /data
USER 10001
VOLUME /data
EXPOSE 9001
HEALTHCHECK --interval=30s --timeout=5s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9001/healthz', timeout=4)"]
ENTRYPOINT ["visionserve", "serve"]
