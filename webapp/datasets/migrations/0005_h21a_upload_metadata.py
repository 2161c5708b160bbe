# tus uploads keep the client's Upload-Metadata on the upload session.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("datasets", "0004_ingest_failures")]

    operations = [
        migrations.AddField(model_name="uploadsession", name="metadata",
                            field=models.JSONField(blank=True, default=dict)),
    ]
