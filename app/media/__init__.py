"""Where finished images are kept, so results outlive RunPod's and the workers' links."""

from app.core.config import MediaBackend, Settings
from app.media.local import LocalStore
from app.media.s3 import S3Store
from app.media.store import MediaStore


def open_store(settings: Settings) -> MediaStore:
    """The backend MEDIA_BACKEND names."""
    if settings.media_backend is MediaBackend.S3:
        return S3Store(settings)
    return LocalStore(settings.media_dir)
