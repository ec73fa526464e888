"""Drop-ins for RAG frameworks: qr-edge in the place of their condense-question LLM call.

``qr_edge.integrations.langchain`` (extra ``langchain``) and ``qr_edge.integrations.llama_index`` (extra
``llama-index``); each imports only its framework's core package.
"""
