# Image for loop's ML backend (CPU only; see docker-compose.yml).
#   docker build -t loop-ml-backend .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The CPU build of torch first, so that `pip install .` finds torch already satisfied
# and never pulls a CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md ./
COPY loop ./loop
COPY ml_backend ./ml_backend
RUN pip install .

ENV LOOP_WORKSPACE=/data
VOLUME /data
EXPOSE 9090

CMD ["loop-ml-backend", "--host", "0.0.0.0", "--port", "9090"]
