"""Upload handling: bodies stream to temp files, with the size limit enforced while streaming."""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler


class LimitedTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    """Like Django's temp-file handler, but stops at MAX_UPLOAD_BYTES and deletes the partial file."""

    def receive_data_chunk(self, raw_data, start):
        if start + len(raw_data) > settings.MAX_UPLOAD_BYTES:
            self.request.upload_too_large = True
            self.file.close()  # a NamedTemporaryFile: closing removes it
            raise StopUpload(connection_reset=False)
        return super().receive_data_chunk(raw_data, start)

    def file_complete(self, file_size):
        if getattr(self.request, "upload_too_large", False):
            return None
        return super().file_complete(file_size)


def upload_too_large_message() -> str:
    return f"the file is larger than the {settings.MAX_UPLOAD_BYTES // (1024 * 1024)} MB upload limit"
