"""Upload handling: bodies stream to temp files, with the size limit enforced while streaming."""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler


class LimitedTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    """Like Django's temp-file handler, but stops at MAX_UPLOAD_BYTES and deletes the partial file."""

    def receive_data_chunk(self, raw_data, start):
        if start + len(raw_data) > single_request_limit():
            self.request.upload_too_large = True
            self.file.close()  # a NamedTemporaryFile: closing removes it
            raise StopUpload(connection_reset=False)
        return super().receive_data_chunk(raw_data, start)

    def file_complete(self, file_size):
        if getattr(self.request, "upload_too_large", False):
            return None
        return super().file_complete(file_size)


def single_request_limit() -> int:
    return min(settings.MAX_UPLOAD_BYTES, settings.MAX_REQUEST_BYTES)


def upload_too_large_message() -> str:
    if settings.MAX_REQUEST_BYTES < settings.MAX_UPLOAD_BYTES:
        return (f"the file is larger than {settings.MAX_REQUEST_BYTES // 2**20} MB, the limit for one request: "
                f"send it in chunks through /api/uploads/ (the web page does this by itself; files may be up to "
                f"{settings.MAX_UPLOAD_BYTES // 2**20} MB)")
    return f"the file is larger than the {settings.MAX_UPLOAD_BYTES // 2**20} MB upload limit"
