from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0006_job_lineage'),
    ]

    operations = [
        migrations.AddField(
            model_name='job',
            name='warnings',
            field=models.JSONField(blank=True, default=list, help_text="the run's warnings about its model"),
        ),
    ]
