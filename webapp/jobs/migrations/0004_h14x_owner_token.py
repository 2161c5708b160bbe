from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("jobs", "0003_requeue_requested")]

    operations = [
        migrations.AddField(model_name="job", name="owner_token", field=models.PositiveIntegerField(default=0)),
    ]
