from django import template

register = template.Library()


@register.filter
def get_value(mapping, key):
    return mapping.get(key) if hasattr(mapping, "get") else None


@register.filter
def model_error(errors, name):
    return errors.get(f"model_config.{name}", "")


@register.filter
def train_error(errors, name):
    return errors.get(f"train_config.{name}", "")


@register.filter
def as_json(value):
    """A value as JSON text, for a data- attribute (the template's escaping makes it safe there)."""
    import json

    return json.dumps(value)
