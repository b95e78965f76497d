"""The clinician's review workspace (``medscope review``): a local web app over a library of cases, to play the
evidence, judge the answer, correct the window and turn reviews into training data.

``workspace`` is the command, ``app`` its routes, ``db`` the database, ``cases`` importing, ``jobs`` questions
asked in the page, ``media`` the video, ``export`` the reviews out, ``views`` the case page, ``security`` the
guards.
"""
