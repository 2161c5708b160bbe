# The Trainyard image: the web server and every worker; deploy/docker-compose.yml picks the command
# of each service. Build: `docker build -t trainyard .` (or `docker compose -f deploy/docker-compose.yml build`).
#
# PyTorch: `torch==2.14.1` from PyPI on Linux x86_64 is the CUDA build. Its CUDA runtime, cuDNN and
# NCCL come as nvidia-* wheels (several GB in the image), so the image needs no CUDA base: a GPU
# host needs only the NVIDIA driver (recent enough for the CUDA 13 wheels) and the NVIDIA
# Container Toolkit, and the container gets its GPU from compose's device reservation. For a
# smaller CPU-only image (a web or ingest machine without GPUs), build with
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# which installs PyTorch's CPU-only builds of the same versions first (requirements.txt then keeps them).
FROM python:3.11-slim

ARG TORCH_INDEX_URL=
# The account the processes run as; files on a shared data dir (NFS) belong to this uid.
ARG TRAINYARD_UID=10001

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=webapp.settings \
    TRAINYARD_DATA_DIR=/data

RUN groupadd --system --gid "$TRAINYARD_UID" trainyard \
 && useradd --system --uid "$TRAINYARD_UID" --gid trainyard --create-home --home-dir /home/trainyard \
      --shell /usr/sbin/nologin trainyard

WORKDIR /app
COPY requirements.txt .
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
      pip install --index-url "$TORCH_INDEX_URL" \
        "$(grep -E '^torch==' requirements.txt)" "$(grep -E '^torchvision==' requirements.txt)"; \
    fi \
 && pip install -r requirements.txt

# The code belongs to root (the processes cannot change it); the data dir to the account. A named
# volume mounted at /data starts as this directory (owner and mode included).
COPY . .
RUN install -d -o trainyard -g trainyard -m 0700 /data

USER trainyard
EXPOSE 8000
CMD ["python", "manage.py", "runweb", "--host", "0.0.0.0", "--port", "8000"]
