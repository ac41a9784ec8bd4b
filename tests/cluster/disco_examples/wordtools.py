"""A module of the user's, next to the job script: Disco's module scanner must find it in
the map function and ship it with the job (the slaves do not have it)."""


def normalize(word):
    return word.strip(".,;:!?").lower()
